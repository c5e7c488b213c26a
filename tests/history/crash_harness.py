"""Helpers for the crash-safety tests: a CLI deployment on SQLite or PostgreSQL, watching a sync
worker from outside (mid-fetch, mid-apply, holding the SQLite write lock), and comparing tables.

"Mid-apply" is observed, never provoked by a test hook in the product:
- PostgreSQL: the test holds a lock the apply needs (`LOCK TABLE ... IN SHARE MODE`), so the worker's
  write transaction, already holding earlier writes, waits on it; the worker's session is found in
  `pg_stat_activity` by its application_name (`moodle-integration [<pid>]`) waiting on a Lock.
- SQLite: nothing can pause a writer midway, so the apply is made long (the first enrolment sync
  of the emulator's scale S: ~5,000 inserts in one transaction) and the worker is caught holding
  the database's write lock for a while after its fetch is over.
"""
from __future__ import annotations

import contextlib

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from moodle_assets.history import RunRow, SyncHistory
from moodle_assets.store.db import create_app_engine, transaction
from moodle_assets.store.models import CourseCatalog, CourseCategory, User, UserCourseEnrollment
from tests.conftest import REPO_ROOT, write_dagster_home

CLI = str(Path(sys.executable).with_name("moodle-integration"))
TABLES = (CourseCategory, CourseCatalog, User, UserCourseEnrollment)


def snapshot(engine) -> dict[str, list[tuple]]:
    """Every row of the four data tables, every column."""
    out = {}
    with transaction(engine) as s:
        for model in TABLES:
            out[model.__tablename__] = sorted(tuple(r) for r in s.execute(select(*model.__table__.columns)).all())
    return out


def old_or_new(killed: dict, old: dict, new: dict) -> dict[str, str]:
    """Per table: 'old' or 'new' (exactly one of the two states), else the assertion fails."""
    verdict = {}
    for table in killed:
        if killed[table] == old[table]:
            verdict[table] = "old"
        elif killed[table] == new[table]:
            verdict[table] = "new"
        else:
            raise AssertionError(f"{table} holds neither the old nor the new state (a partial write?)")
    return verdict


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, *, interval: float = 0.05,
               alive: Callable[[], None] | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if alive is not None:
            alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@dataclass
class Deployment:
    """`moodle-integration sync` as a user runs it: env vars, a subprocess per command."""

    tmp: Path
    db_url: str
    emulator: Any
    env: dict[str, str] = field(repr=False)
    engine: Any = field(default=None, repr=False)
    procs: list[subprocess.Popen] = field(default_factory=list, repr=False)

    @property
    def history(self) -> SyncHistory:
        return SyncHistory(self.engine, heartbeat_timeout=int(self.env["MOODLE_SYNC_HEARTBEAT_TIMEOUT_SECONDS"]))

    @property
    def postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @property
    def sqlite_path(self) -> str:
        return str(make_url(self.db_url).database)

    def run(self, *args: str, timeout: float = 300, env: dict | None = None) -> tuple[int, str]:
        done = subprocess.run([CLI, *args], cwd=REPO_ROOT, env={**self.env, **(env or {})}, capture_output=True,
                              text=True, timeout=timeout)
        return done.returncode, done.stdout + done.stderr

    def start(self, *args: str, env: dict | None = None) -> subprocess.Popen:
        log = (self.tmp / f"cli-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen([CLI, *args], cwd=REPO_ROOT, env={**self.env, **(env or {})}, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        proc.log_path = log.name  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def output(self, proc: subprocess.Popen) -> str:
        return Path(proc.log_path).read_text(errors="replace")  # type: ignore[attr-defined]

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGCONT)
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(10)
        self.engine.dispose()

    # -- the emulator --
    def faults(self, config: dict) -> None:
        requests.post(f"{self.emulator.url}/__emulator__/faults", json=config, timeout=10).raise_for_status()

    def mutate(self, *ops: dict) -> None:
        requests.post(f"{self.emulator.url}/__emulator__/mutate", json={"ops": list(ops)},
                      timeout=10).raise_for_status()

    def counters(self, reset: bool = False) -> dict:
        if reset:
            requests.post(f"{self.emulator.url}/__emulator__/counters/reset", timeout=10).raise_for_status()
        return requests.get(f"{self.emulator.url}/__emulator__/counters", timeout=10).json()

    # -- watching the worker --
    def running_row(self, target: str) -> dict | None:
        return running_row(self.engine, target)

    def sqlite_write_locked(self) -> bool:
        return sqlite_write_locked(self.sqlite_path)

    def pg_waiting_on_lock(self, pid: int) -> bool:
        return pg_waiting_on_lock(self.engine, pid)

    def wait_mid_fetch(self, target: str, function: str, proc: subprocess.Popen | None = None,
                       timeout: float = 120) -> dict:
        return wait_mid_fetch(self.engine, target, function, self.counters, alive=alive_check(proc), timeout=timeout)

    def wait_sqlite_mid_apply(self, target: str, proc: subprocess.Popen, timeout: float = 180) -> dict:
        return wait_sqlite_mid_apply(self.engine, target, alive=alive_check(proc), timeout=timeout)


def alive_check(proc: subprocess.Popen | None) -> Callable[[], None]:
    def check() -> None:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the sync exited ({proc.returncode}) before it could be caught")

    return check


def _sqlite_path(engine) -> str:
    return str(make_url(engine.url).database)


def running_row(engine, target: str) -> dict | None:
    """The target's RUNNING row (id, taken, worker pid), read without taking any write lock."""
    query = ("SELECT id, worker_started_at, worker_pid FROM integration_sync_run "
             "WHERE target = :t AND status = 'RUNNING' ORDER BY id DESC")
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            found = connection.execute(text(query), {"t": target}).first()
    else:
        with sqlite3.connect(f"file:{_sqlite_path(engine)}?mode=ro", uri=True, timeout=30) as connection:
            found = connection.execute(query.replace(":t", "?"), (target,)).fetchone()
    if found is None:
        return None
    return {"id": found[0], "taken": found[1] is not None, "pid": found[2]}


def sqlite_write_locked(path: str) -> bool:
    """Someone holds the SQLite database's write lock right now."""
    connection = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            return True
        raise
    finally:
        connection.close()


@contextlib.contextmanager
def slow_sqlite_writes(engine, table: str = "user_course_enrollment", pad: int = 60):
    """Make every INSERT into `table` cost a few milliseconds (a test-only trigger doing a
    pointless cross join), so a SQLite apply of a few thousand rows is caught mid-transaction
    however fast the machine; dropped on exit. Nothing pauses a SQLite writer midway otherwise."""
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE test_slow_pad (x INTEGER)"))
        connection.execute(text("INSERT INTO test_slow_pad VALUES " + ", ".join(f"({i})" for i in range(pad))))
        connection.execute(text(
            f"CREATE TRIGGER test_slow_apply AFTER INSERT ON {table} BEGIN "
            "SELECT count(*) FROM test_slow_pad a, test_slow_pad b, test_slow_pad c; END"
        ))
    try:
        yield
    finally:
        with engine.begin() as connection:
            connection.execute(text("DROP TRIGGER IF EXISTS test_slow_apply"))
            connection.execute(text("DROP TABLE IF EXISTS test_slow_pad"))


def pg_waiting_on_lock(engine, pid: int) -> bool:
    """The process `pid` has a database session waiting on a lock inside a transaction that wrote."""
    with engine.connect() as connection:
        return bool(connection.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name AND wait_event_type = 'Lock'"
            " AND backend_xid IS NOT NULL"), {"name": f"moodle-integration [{pid}]"}).scalar())


def wait_mid_fetch(engine, target: str, function: str, counters: Callable[[], dict], *,
                   alive: Callable[[], None] | None = None, timeout: float = 120) -> dict:
    """Until `target`'s row is taken by a worker and Moodle has answered some `function` calls."""
    def check():
        found = running_row(engine, target)
        if found and found["taken"] and counters()["by_function"].get(function, 0) > 0:
            return found
        return None

    return wait_until(check, timeout, f"{target} mid-fetch", interval=0.1, alive=alive)


def wait_sqlite_mid_apply(engine, target: str, *, held_for: float = 0.2, alive: Callable[[], None] | None = None,
                          timeout: float = 180) -> dict:
    """Until `target`'s worker has held the write lock for `held_for` s after its row was taken
    (on SQLite only an apply holds it that long: claims and heartbeats take milliseconds)."""
    found = wait_until(lambda: (r := running_row(engine, target)) and r["taken"] and r, timeout, f"{target} taken",
                       alive=alive)
    path = _sqlite_path(engine)
    since = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None:
            alive()
        if sqlite_write_locked(path):
            since = since or time.monotonic()
            if time.monotonic() - since >= held_for:
                return found
        else:
            since = None
        time.sleep(0.01)
    raise AssertionError(f"{target}'s worker never held the write lock for {held_for} s")


def make_deployment(tmp: Path, db_url: str, emulator, *, heartbeat_timeout: int = 180) -> Deployment:
    from moodle_assets.store.migrate import upgrade

    home = write_dagster_home(tmp / "dagster_home", run_coordinator="immediate")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(
        DAGSTER_HOME=str(home),
        DATABASE_URL=db_url,
        MOODLE_URL=emulator.url,
        MOODLE_TOKEN=emulator.token,
        MOODLE_INTEGRATION_DATA_DIR=str(tmp / "data"),
        MOODLE_SYNC_HEARTBEAT_TIMEOUT_SECONDS=str(heartbeat_timeout),
        MOODLE_RATE_LIMIT_BASE_DELAY_MS="10",
        MOODLE_RATE_LIMIT_MAX_DELAY_MS="50",
        PYTHONUNBUFFERED="1",
    )
    upgrade(db_url)
    return Deployment(tmp=tmp, db_url=db_url, emulator=emulator, env=env, engine=create_app_engine(db_url))


def active_pairs(engine, n: int) -> list[tuple[int, int]]:
    """(Moodle course id, Moodle user id) of `n` enrolments stored active, one per course, in course
    order: suspending them in Moodle is sure to give the next enrolment sync something to write."""
    with engine.connect() as connection:
        found = connection.execute(text(
            "SELECT moodle_course_id, min(moodle_user_id) FROM user_course_enrollment WHERE is_active "
            "GROUP BY moodle_course_id ORDER BY moodle_course_id")).all()
    assert len(found) >= n, found
    return [(int(c), int(u)) for c, u in found[:n]]


def row(history: SyncHistory, run_id: int) -> RunRow:
    found = history.get(run_id)
    assert found is not None
    return found
