"""Liveness locks: a RUNNING row whose process died is closed at once; a live (or merely stopped)
one is not; and of several processes claiming one target at the same moment exactly one owns it.
Each case on SQLite (file locks) and on PostgreSQL (advisory locks)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from moodle_assets.core.clock import utcnow
from moodle_assets.core.targets import SyncStatus, SyncTarget, SyncTrigger
from moodle_assets.history import SyncHistory
from moodle_assets.history.liveness import FileLiveness, PostgresLiveness, liveness_for
from tests.conftest import REPO_ROOT

WORKER = Path(__file__).with_name("liveness_worker.py")
ENROL = SyncTarget.ENROLLMENTS


@pytest.fixture
def history(migrated_engine) -> SyncHistory:
    return SyncHistory(migrated_engine, heartbeat_timeout=30)


def spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WORKER), *args], cwd=REPO_ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def first_line(proc: subprocess.Popen, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    line = proc.stdout.readline()
    assert line, f"worker said nothing (exit {proc.poll()}): {proc.stderr.read()}"
    assert time.monotonic() < deadline
    return json.loads(line)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def kill(proc: subprocess.Popen, sig=signal.SIGKILL) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, sig)
        if sig == signal.SIGKILL:
            proc.wait(10)


def test_the_backend_matches_the_database(history, db_url):
    expected = PostgresLiveness if db_url.startswith("postgresql") else FileLiveness
    assert isinstance(history.liveness, expected)
    assert liveness_for(history.engine) is history.liveness  # one per database and process


def test_hold_probe_release_in_one_process(history, db_url):
    claim = history.claim(ENROL, SyncTrigger.CLI, hold=True)
    row = history.get(claim.run_id)
    assert row.worker_pid == os.getpid() and row.worker_host and row.worker_lock
    assert history.liveness.probe([(claim.run_id, row.worker_host)]) == {claim.run_id: True}
    owner = history.take(claim.run_id, "run-1")  # keeps the lock it holds
    assert history.liveness.held_ids() == [claim.run_id]
    assert history.finish(owner, SyncStatus.SUCCESS)  # closes the row, then lets the lock go
    assert history.liveness.held_ids() == []
    assert history.liveness.probe([(claim.run_id, row.worker_host)]) == {claim.run_id: False}
    if isinstance(history.liveness, FileLiveness):
        assert not history.liveness.path(claim.run_id).exists()


def test_a_killed_worker_s_row_is_closed_at_once(history):
    worker = spawn("hold", str(history.engine.url.render_as_string(hide_password=False)), ENROL.value)
    try:
        held = first_line(worker)
        assert held["started"] and held["token"]
        row = history.get(held["run_id"])
        assert row.worker_pid == worker.pid
        # Alive: a claim loses to it, naming it, and nothing is closed.
        busy = history.claim(ENROL, SyncTrigger.CLI)
        assert not busy.started and busy.closed_ghosts == ()
        assert busy.holder.run_id == held["run_id"] and busy.holder.pid == worker.pid
        assert f"pid {worker.pid} on host" in busy.reason
        kill(worker)
        killed_at = time.monotonic()
        # The next claim closes it without waiting for the heartbeat timeout (30 s here).
        claim = wait_for(lambda: (c := history.claim(ENROL, SyncTrigger.CLI)).started and c, 10, "the claim")
        waited = time.monotonic() - killed_at
    finally:
        kill(worker)
    assert claim.closed_ghosts == (held["run_id"],)
    assert waited < 5, waited
    closed = history.get(held["run_id"])
    assert closed.status == "FAILED"
    assert closed.error.startswith(f"worker lost: its worker (pid {worker.pid} on host ")
    assert "liveness lock was free" in closed.error
    print(f"\nkilled holder's row closed {waited:.2f} s after the kill")


def test_a_stopped_worker_keeps_its_row_until_the_heartbeat_timeout(history):
    worker = spawn("hold", str(history.engine.url.render_as_string(hide_password=False)), ENROL.value)
    try:
        held = first_line(worker)
        os.kill(worker.pid, signal.SIGSTOP)
        # Its lock is still held: alive as far as the lock can tell.
        assert history.reconcile_ghosts() == []
        later = utcnow() + timedelta(seconds=31)
        gone: list[tuple[str, str]] = []
        assert history.reconcile_ghosts(now=later, on_worker_gone=lambda r, why: gone.append((r, why))) == [
            held["run_id"]
        ]
        row = history.get(held["run_id"])
        assert row.error.startswith("worker lost: no heartbeat since")
        assert f"(pid {worker.pid} on host" in row.error and "still holds its liveness lock" in row.error
        assert gone == [(f"fake-{worker.pid}", row.error)]
        os.kill(worker.pid, signal.SIGCONT)
        # Resumed, its next beat finds the row closed: it stops (the worker script exits).
        assert worker.wait(15) == 0
    finally:
        kill(worker, signal.SIGCONT)
        kill(worker)


def test_concurrent_claims_from_several_processes_give_exactly_one_owner(history):
    url = str(history.engine.url.render_as_string(hide_password=False))
    # A dead worker's row first: every racer sees it, one closes it, one owns the target.
    ghost = spawn("hold", url, ENROL.value)
    dead = first_line(ghost)
    kill(ghost)
    start_at = time.time() + 6  # every racer loaded and waiting (Python start-up on a loaded box)
    racers = [spawn("race", url, ENROL.value, str(start_at)) for _ in range(6)]
    try:
        results = [first_line(r, timeout=90) for r in racers]
        for r in racers:
            r.stdin.close()  # the owner may finish now
        for r in racers:
            assert r.wait(60) == 0, r.stderr.read()
    finally:
        for r in racers:
            kill(r)
    assert sum(r["started"] for r in results) == 1, results
    assert sum(r["owner"] for r in results) == 1, results
    assert sorted(g for r in results for g in r["closed_ghosts"]) == [dead["run_id"]]
    rows = history.recent(target=ENROL, limit=20)
    assert sorted(r.status for r in rows) == ["FAILED"] + ["SKIPPED"] * 5 + ["SUCCESS"]
    assert history.running() == []


@pytest.mark.postgres
def test_a_worker_whose_lock_session_is_lost_loses_its_row_and_cannot_commit(pg_url):
    """The database dropped the worker's lock session (server restart, a partition the server
    noticed): the next claim closes the row at once; the worker's next beat re-takes its lock but
    finds the row closed, and its fence refuses to commit."""
    from sqlalchemy import text

    from moodle_assets.history import LostOwnership
    from moodle_assets.store.db import create_app_engine, transaction
    from moodle_assets.store.migrate import upgrade

    upgrade(pg_url)
    engine = create_app_engine(pg_url)
    try:
        history = SyncHistory(engine, heartbeat_timeout=30)
        owner = history.take(history.claim(ENROL, SyncTrigger.CLI, hold=True).run_id, "run")
        backend_pid = history.liveness._backend_pid
        with engine.begin() as connection:
            assert connection.execute(text("SELECT pg_terminate_backend(:p)"), {"p": backend_pid}).scalar()
        claim = wait_for(lambda: (c := history.claim(ENROL, SyncTrigger.CLI)).started and c, 10, "the claim")
        assert claim.closed_ghosts == (owner.run_id,)
        assert "liveness lock was free" in history.get(owner.run_id).error
        assert not history.heartbeat(owner)  # reconnects, re-takes its lock, finds the row closed
        with pytest.raises(LostOwnership):
            with transaction(engine) as session:
                history.fence(owner, session, final=True)
        history.release([owner.run_id])
    finally:
        engine.dispose()


def test_a_run_worker_killed_before_its_later_targets_gets_all_its_rows_closed_at_once(history):
    """A front door claimed three targets for one Dagster run; its worker answers for all three as
    soon as it starts, so dying during the first one frees the other two at once as well."""
    claims = [history.claim(t, SyncTrigger.API, dagster_run_id="fake-run") for t in
              (SyncTarget.COURSE_CATALOG, SyncTarget.USER_DIRECTORY, ENROL)]
    ids = [c.run_id for c in claims]
    assert all(history.get(i).worker_lock is None for i in ids)  # the web process holds nothing
    worker = spawn("adopt", str(history.engine.url.render_as_string(hide_password=False)), "ENROLLMENTS", ",".join(map(str, ids)))
    try:
        adopted = first_line(worker)
        assert adopted["adopted"] == ids and adopted["token"]
        assert {history.get(i).worker_pid for i in ids} == {worker.pid}
        assert history.reconcile_ghosts() == []  # alive
        kill(worker)
        closed = wait_for(lambda: history.reconcile_ghosts(), 10, "the rows to be closed")
    finally:
        kill(worker)
    assert sorted(closed) == ids
    assert all("liveness lock was free" in history.get(i).error for i in ids)
