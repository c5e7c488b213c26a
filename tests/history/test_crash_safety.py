"""Crash safety of `moodle-integration sync`, on SQLite and PostgreSQL, as a user (or cron) runs it.

- SIGKILL mid-fetch (the case that was measured: `sync --all` killed while it reads enrolment
  pages, then `sync --all` again at once): the re-run syncs every target, without waiting.
- SIGKILL mid-apply: the write transaction is rolled back whole; the re-run syncs at once.
- SIGSTOP past the heartbeat timeout while a new owner syncs, then SIGCONT: the stopped worker
  writes nothing, the data are the new owner's, and the history says what happened.
In every case the tables hold exactly the old or exactly the new state, and the printed
figures are the waits the closing note reports.
"""
from __future__ import annotations

import os
import signal
import time

import pytest
from sqlalchemy import text

from moodle_assets.cli import exit_codes
from moodle_assets.core.targets import SyncTarget, SyncTrigger
from tests.history.crash_harness import (Deployment, alive_check, make_deployment, old_or_new, row, slow_sqlite_writes,
                                         snapshot,
                                         wait_until)

ENROL_FN = "core_enrol_get_enrolled_users"
STOP_TIMEOUT_S = 10


@pytest.fixture
def real_site():
    from moodle_emulator import EmulatorServer

    with EmulatorServer(scale="real", token="crash-test-token", port=0) as emu:
        yield emu


@pytest.fixture
def s_site():
    from moodle_emulator import EmulatorServer

    with EmulatorServer(scale="S", token="crash-test-token", port=0) as emu:
        yield emu


@pytest.fixture
def deployment(db_url, tmp_path, real_site):
    d = make_deployment(tmp_path, db_url, real_site)
    try:
        yield d
    finally:
        d.stop_all()


def enrolled_pairs(emulator, n: int) -> list[tuple[int, int]]:
    """`n` (course, user) enrolments in distinct courses, from the emulator's own dataset."""
    pairs = []
    for course_id in sorted(emulator.dataset.enrolments):
        users = list(emulator.dataset.enrolments[course_id].users)
        if course_id != 1 and users:
            pairs.append((course_id, int(users[0])))
        if len(pairs) == n:
            break
    return pairs


def kill(proc, sig=signal.SIGKILL) -> float:
    os.killpg(proc.pid, sig)
    if sig == signal.SIGKILL:
        proc.wait(10)
    return time.monotonic()


def test_sync_all_killed_mid_fetch_then_sync_all_again_syncs_every_target_at_once(deployment: Deployment):
    d = deployment
    rc, out = d.run("sync", "--all")
    assert rc == 0, out
    old = snapshot(d.engine)
    d.mutate(*[{"op": "suspend_enrolment", "course_id": c, "user_id": u} for c, u in enrolled_pairs(d.emulator, 2)])
    d.faults({"latency_ms": 300})
    d.counters(reset=True)
    proc = d.start("sync", "--all")
    ghost = d.wait_mid_fetch("ENROLLMENTS", ENROL_FN, proc)
    assert ghost["pid"] == proc.pid  # the sync command answers for its rows itself
    killed_at, killed_wall = kill(proc), time.time()
    d.faults({})
    killed = snapshot(d.engine)

    rc, out = d.run("sync", "--all")
    resynced_at = time.monotonic()
    assert rc == exit_codes.OK, out
    assert "SKIPPED" not in out and out.count(" SUCCESS ") == 3, out
    new = snapshot(d.engine)
    verdict = old_or_new(killed, old, new)
    assert verdict["user_course_enrollment"] == "old"  # killed before its commit: nothing of it landed
    dead = row(d.history, ghost["id"])
    assert dead.status == "FAILED" and "liveness lock was free" in dead.error, dead.error
    assert dead.error.startswith(f"worker lost: its worker (pid {proc.pid} on host ")
    freed_after = dead.finished_at.timestamp() - killed_wall
    # The killed run's Dagster run was marked failed, not left STARTED for ever.
    from dagster import DagsterInstance

    with DagsterInstance.from_config(d.env["DAGSTER_HOME"]) as instance:
        assert instance.get_run_by_id(dead.dagster_run_id).status.value == "FAILURE"
    print(f"\n[{d.engine.dialect.name}] CLI SIGKILL mid-fetch: the re-run's first claim closed the dead row "
          f"{freed_after:.1f} s after the kill (its own start-up: no wait, no retry); re-run "
          f"{resynced_at - killed_at:.1f} s end to end; tables {verdict}")


@pytest.mark.postgres
def test_sync_killed_mid_apply_on_postgres_rolls_back_whole_and_the_next_sync_runs_at_once(pg_url, tmp_path,
                                                                                          real_site):
    d = make_deployment(tmp_path, pg_url, real_site)
    try:
        rc, out = d.run("sync", "--all")
        assert rc == 0, out
        old = snapshot(d.engine)
        # The catalog's apply writes the course changes, then deactivates the removed course's
        # enrolments: the test holds that table, so the kill lands after the first writes.
        course, _user = enrolled_pairs(d.emulator, 1)[0]
        others = [c for c in sorted(d.emulator.dataset.courses) if c not in (1, course)][:2]
        d.mutate({"op": "remove_course", "course_id": course},
                 *[{"op": "set_course_price", "course_id": c, "price": 4242} for c in others])
        with d.engine.connect() as blocker:
            tx = blocker.begin()
            blocker.execute(text("LOCK TABLE user_course_enrollment IN SHARE MODE"))
            proc = d.start("sync", "--target", "COURSE_CATALOG")
            wait_until(lambda: d.pg_waiting_on_lock(proc.pid), 120, "the catalog apply to wait on the lock",
                       alive=alive_check(proc))
            ghost = d.running_row("COURSE_CATALOG")
            killed_at = kill(proc)
            tx.rollback()
        _finish_mid_apply_case(d, ghost, "COURSE_CATALOG", old, killed_at)
    finally:
        d.stop_all()


def test_sync_killed_mid_apply_on_sqlite_rolls_back_whole_and_the_next_sync_runs_at_once(sqlite_url, tmp_path, s_site):
    d = make_deployment(tmp_path, sqlite_url, s_site)
    try:
        # The first enrolment sync of scale S inserts ~5,000 rows in one transaction.
        rc, out = d.run("sync", "--target", "COURSE_CATALOG", "--target", "USER_DIRECTORY")
        assert rc == 0, out
        old = snapshot(d.engine)
        with slow_sqlite_writes(d.engine):
            proc = d.start("sync", "--target", "ENROLLMENTS")
            ghost = d.wait_sqlite_mid_apply("ENROLLMENTS", proc)
            killed_at = kill(proc)
        _finish_mid_apply_case(d, ghost, "ENROLLMENTS", old, killed_at)
    finally:
        d.stop_all()


def _finish_mid_apply_case(d: Deployment, ghost: dict, target: str, old: dict, killed_at: float) -> None:
    killed_wall = time.time() - (time.monotonic() - killed_at)
    killed = snapshot(d.engine)
    assert killed == old, "a killed write transaction left part of its writes"
    rc, out = d.run("sync", "--target", target)
    resynced_at = time.monotonic()
    assert rc == exit_codes.OK, out
    new = snapshot(d.engine)
    assert new != old
    dead = row(d.history, ghost["id"])
    assert dead.status == "FAILED" and "liveness lock was free" in dead.error and dead.applied_at is None
    freed_after = dead.finished_at.timestamp() - killed_wall
    print(f"\n[{d.engine.dialect.name}] CLI SIGKILL mid-apply ({target}): rolled back whole; the re-run's first claim "
          f"closed the dead row {freed_after:.1f} s after the kill (its own start-up: no wait, no retry); re-run "
          f"{resynced_at - killed_at:.1f} s end to end")


def test_a_stopped_sync_is_taken_over_after_the_timeout_and_writes_nothing_when_resumed(db_url, tmp_path, real_site):
    d = make_deployment(tmp_path, db_url, real_site, heartbeat_timeout=STOP_TIMEOUT_S)
    try:
        _stopped_worker_case(d)
    finally:
        d.stop_all()


def _stopped_worker_case(d: Deployment) -> None:
    rc, out = d.run("sync", "--all")
    assert rc == 0, out
    pairs = enrolled_pairs(d.emulator, 3)
    d.mutate({"op": "suspend_enrolment", "course_id": pairs[0][0], "user_id": pairs[0][1]})
    d.faults({"latency_ms": 1500})
    d.counters(reset=True)
    stopped = d.start("sync", "--target", "ENROLLMENTS")
    for _attempt in range(20):
        ghost = d.wait_mid_fetch("ENROLLMENTS", ENROL_FN, stopped)
        os.killpg(stopped.pid, signal.SIGSTOP)
        stopped_at, stopped_wall = time.monotonic(), time.time()
        # On SQLite a process stopped inside a write transaction would hold the database's
        # write lock (a documented limit); stop it between transactions.
        if d.postgres or not d.sqlite_write_locked():
            break
        os.killpg(stopped.pid, signal.SIGCONT)
        time.sleep(0.05)
    d.faults({})
    d.mutate({"op": "suspend_enrolment", "course_id": pairs[1][0], "user_id": pairs[1][1]})  # newer Moodle data

    # At once: the stopped worker still holds its lock, so it counts as live and holds the target
    # (a `sync` now would exit 75 naming it; see test_sync_exits_75_naming_the_live_holder).
    busy = d.history.claim(SyncTarget.ENROLLMENTS, SyncTrigger.CLI)
    assert not busy.started and busy.holder.run_id == ghost["id"] and busy.holder.pid == stopped.pid
    # Retried like a cron wrapper would: it gets through once the heartbeat timeout has passed.
    while True:
        rc, out = d.run("sync", "--target", "ENROLLMENTS")
        if rc != exit_codes.BUSY:
            break
        assert time.monotonic() - stopped_at < 120, out
    took_over_after = time.monotonic() - stopped_at
    assert rc == exit_codes.OK, out
    new_owner = snapshot(d.engine)
    dead = row(d.history, ghost["id"])
    assert dead.status == "FAILED" and "still holds its liveness lock" in dead.error, dead.error

    os.killpg(stopped.pid, signal.SIGCONT)
    assert stopped.wait(120) == exit_codes.FAILED, d.output(stopped)
    assert "lost ownership" in d.output(stopped), d.output(stopped)
    assert snapshot(d.engine) == new_owner  # the resumed worker wrote nothing
    dead = row(d.history, ghost["id"])
    assert f"its worker (pid {stopped.pid} on host" in dead.error and "was still alive" in dead.error, dead.error
    assert dead.applied_at is None
    freed_after = dead.finished_at.timestamp() - stopped_wall
    print(f"\n[{d.engine.dialect.name}] CLI SIGSTOP mid-fetch: target freed {freed_after:.1f} s after the stop "
          f"(heartbeat timeout {STOP_TIMEOUT_S} s; last beat {stopped_wall - dead.heartbeat_at.timestamp():.1f} s "
          f"before the stop); a retrying `sync` got through after {took_over_after:.1f} s (CLI start-ups "
          "included); the resumed worker wrote nothing")


def test_sync_exits_75_naming_the_live_holder(deployment: Deployment):
    """A target held by a live sync is not synced: exit 75 (EX_TEMPFAIL) so cron notices, the
    holder named; the other targets sync; the exit is 0 again once the holder is gone."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    d = deployment
    worker = Path(__file__).with_name("liveness_worker.py")
    holder = subprocess.Popen([sys.executable, str(worker), "hold", d.db_url, "ENROLLMENTS"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        held = json.loads(holder.stdout.readline())
        rc, out = d.run("sync", "--all")
        assert rc == exit_codes.BUSY, out
        assert out.count(" SUCCESS ") == 2, out  # the other targets were synced
        line = next(x for x in out.splitlines() if x.startswith("ENROLLMENTS"))
        assert "SKIPPED" in line and f"sync run #{held['run_id']}, started " in line, line
        assert f"pid {holder.pid} on host " in line and "last heartbeat" in line and "try again later" in line, line
    finally:
        holder.kill()
        holder.wait(10)
    rc, out = d.run("sync", "--target", "ENROLLMENTS")  # its holder died: closed at once, synced
    assert rc == exit_codes.OK, out
