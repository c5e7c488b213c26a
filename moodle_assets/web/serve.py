"""`moodle-integration serve`: the web process (Dagster UI + our routes) and the daemon.

One command gives a user everything: pending migrations applied, the Dagster UI and the
admin page on one port, the daemon (sensor, run queue, run monitoring) beside it, and, when
no MOODLE_URL is set, the bundled Moodle emulator with demo data. Ctrl-C (or SIGTERM)
stops all of it.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from contextlib import ExitStack
from pathlib import Path

import uvicorn
from dagster import DagsterInstance

from ..orchestration.instance import WORKSPACE_FILE, export_for_children, prepare_dagster_home
from ..settings import Settings, load_settings
from ..store.db import engine_for
from ..store.migrate import upgrade
from .app import create_app, workspace_context
from .demo import enable_demo_schedule, start_demo_emulator

log = logging.getLogger(__name__)

DAEMON_STOP_TIMEOUT_S = 20
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def daemon_command(workspace_file: Path = WORKSPACE_FILE) -> list[str]:
    executable = Path(sys.executable).with_name("dagster-daemon")
    return [str(executable), "run", "-w", str(workspace_file)]


def start_daemon(stack: ExitStack, workspace_file: Path = WORKSPACE_FILE) -> subprocess.Popen:
    process = subprocess.Popen(daemon_command(workspace_file), cwd=workspace_file.parent, env=os.environ.copy())

    def stop() -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=DAEMON_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    stack.callback(stop)
    return process


def serve(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 3000,
    *,
    daemon: bool = True,
    demo: bool | None = None,
    workspace: Path | None = None,
) -> int:
    upgrade(settings.database_url)
    with ExitStack() as stack:
        use_demo = settings.moodle_url is None if demo is None else demo
        if use_demo:
            emulator = start_demo_emulator(stack)
            settings = load_settings()  # now with the demo site's MOODLE_URL and token
            print(f"demo Moodle emulator: {emulator.url} (MOODLE_URL unset, so the bundled demo site is used)")
            enabled = enable_demo_schedule(engine_for(settings.database_url))
            if enabled:
                names = ", ".join(t.value for t in enabled)
                print(f"demo: enabled {names} so the first syncs run within a minute")
        elif not settings.moodle_token:
            print(
                "warning: MOODLE_URL is set but MOODLE_TOKEN is not; syncs will fail until it is set", file=sys.stderr
            )
        export_for_children(settings)
        prepare_dagster_home(settings.dagster_home, default_home=settings.data_dir / "dagster_home")
        workspace_file = (workspace or WORKSPACE_FILE).resolve()
        if daemon:
            start_daemon(stack, workspace_file)
        instance = stack.enter_context(DagsterInstance.get())
        context = stack.enter_context(workspace_context(instance, workspace_file))
        app = create_app(context, settings)
        print(f"Dagster UI:  http://{host}:{port}/")
        print(f"Admin page:  http://{host}:{port}/dashboard/admin/integration")
        print(
            f"HTTP trigger: POST http://{host}:{port}/api/integration/moodle/sync"
            + ("" if settings.sync_secret else " (off: set MOODLE_SYNC_CRON_SECRET)")
        )
        if settings.web_token:
            print("Access: sign-in required (MOODLE_INTEGRATION_WEB_TOKEN is set)")
        elif host not in LOCAL_HOSTS:
            print(
                f"warning: serving on {host} with no MOODLE_INTEGRATION_WEB_TOKEN: anyone who can reach this port "
                "can use the Dagster UI and start syncs",
                file=sys.stderr,
            )
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
        try:
            server.run()  # returns on Ctrl-C / SIGTERM
        except KeyboardInterrupt:
            pass  # uvicorn re-raises the captured SIGINT after its clean shutdown
        print("stopping: web server down; stopping the daemon…", flush=True)
    return 0


class BackgroundServer:
    """The web app served by uvicorn in a thread (tests, and embedding)."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        if port == 0:
            with socket.socket() as sock:
                sock.bind((host, 0))
                port = sock.getsockname()[1]
        self.host, self.port = host, port
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("web server failed to start")
            self.thread.join(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
