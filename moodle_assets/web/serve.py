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

from ..dagster_home import WORKSPACE_FILE, prepare_dagster_home
from ..settings import PROJECT_ROOT, load_settings
from ..store.migrate import upgrade
from .app import create_app, workspace_context

log = logging.getLogger(__name__)

DEMO_EMULATOR_PORT = 8089
DEMO_TOKEN = "demo-moodle-token"  # only ever valid for the local demo emulator
DEMO_REQUESTS_PER_SECOND = 50
DAEMON_STOP_TIMEOUT_S = 20


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def start_demo_emulator(stack: ExitStack, *, scale: str = "demo"):
    """Start the bundled emulator for the demo and point MOODLE_URL/MOODLE_TOKEN at it."""
    from ..emulator import EmulatorServer

    port = DEMO_EMULATOR_PORT if _port_free("127.0.0.1", DEMO_EMULATOR_PORT) else 0
    emulator = stack.enter_context(EmulatorServer(scale=scale, token=DEMO_TOKEN, host="127.0.0.1", port=port))
    os.environ["MOODLE_URL"] = emulator.url
    os.environ["MOODLE_TOKEN"] = emulator.token
    # The polite default (5 requests/s) is for real sites; the local demo may go faster.
    os.environ.setdefault("MOODLE_RATE_LIMIT_REQUESTS_PER_SECOND", str(DEMO_REQUESTS_PER_SECOND))
    return emulator


DEMO_FREQUENCIES = {"COURSE_CATALOG": 60, "USER_DIRECTORY": 30, "ENROLLMENTS": 15}


def enable_demo_schedule(database_url: str) -> list[str]:
    """Turn the schedule on for the demo, once: only targets nobody has configured yet."""
    from schedules.config_table import list_configs, update_config

    from ..store.db import engine_for

    engine = engine_for(database_url)
    enabled = []
    for config in list_configs(engine):
        if config.updated_at is None and not config.enabled:
            update_config(engine, config.target, enabled=True, frequency_minutes=DEMO_FREQUENCIES[config.target.value])
            enabled.append(config.target.value)
    return enabled


def daemon_command(workspace_file: Path = WORKSPACE_FILE) -> list[str]:
    executable = Path(sys.executable).with_name("dagster-daemon")
    return [str(executable), "run", "-w", str(workspace_file)]


def start_daemon(stack: ExitStack, workspace_file: Path = WORKSPACE_FILE) -> subprocess.Popen:
    process = subprocess.Popen(daemon_command(workspace_file), cwd=PROJECT_ROOT, env=os.environ.copy())

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
    host: str = "127.0.0.1",
    port: int = 3000,
    *,
    daemon: bool = True,
    demo: bool | None = None,
    workspace: Path | None = None,
) -> int:
    settings = load_settings()
    upgrade(settings.database_url)
    prepare_dagster_home()
    with ExitStack() as stack:
        use_demo = settings.moodle_url is None if demo is None else demo
        if use_demo:
            emulator = start_demo_emulator(stack)
            print(f"demo Moodle emulator: {emulator.url} (MOODLE_URL unset, so the bundled demo site is used)")
            enabled = enable_demo_schedule(settings.database_url)
            if enabled:
                print(f"demo: enabled {', '.join(enabled)} so the first syncs run within a minute")
        elif not settings.moodle_token:
            print("warning: MOODLE_URL is set but MOODLE_TOKEN is not; syncs will fail until it is set", file=sys.stderr)
        workspace_file = (workspace or WORKSPACE_FILE).resolve()
        if daemon:
            start_daemon(stack, workspace_file)
        instance = stack.enter_context(DagsterInstance.get())
        context = stack.enter_context(workspace_context(instance, workspace_file))
        app = create_app(context)
        print(f"Dagster UI:  http://{host}:{port}/")
        print(f"Admin page:  http://{host}:{port}/dashboard/admin/integration")
        print(f"HTTP trigger: POST http://{host}:{port}/api/integration/moodle/sync"
              + ("" if settings.sync_secret else " (off: set MOODLE_SYNC_CRON_SECRET)"))
        from .access import WEB_TOKEN_ENV, configured_token

        if configured_token():
            print(f"Access: sign-in required ({WEB_TOKEN_ENV} is set)")
        elif host not in ("127.0.0.1", "localhost", "::1"):
            print(f"warning: serving on {host} with no {WEB_TOKEN_ENV}: anyone who can reach this port "
                  "can use the Dagster UI and start syncs", file=sys.stderr)
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

    def __enter__(self) -> "BackgroundServer":
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("web server failed to start")
            self.thread.join(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
