"""The sync history's rules: one RUNNING row per target, SKIPPED with a reason, no ghosts, and
only the worker that owns a row may beat or finish it."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from moodle_assets.core.clock import utcnow
from moodle_assets.core.counts import RunCounts
from moodle_assets.core.redaction import register_secrets
from moodle_assets.core.targets import SyncStatus, SyncTarget, SyncTrigger
from moodle_assets.history import RunState, SyncHistory

CATALOG, USERS, ENROL = SyncTarget.COURSE_CATALOG, SyncTarget.USER_DIRECTORY, SyncTarget.ENROLLMENTS


@pytest.fixture
def history(migrated_engine) -> SyncHistory:
    return SyncHistory(migrated_engine, heartbeat_timeout=180)


def test_second_claim_is_skipped_with_reason(history):
    first = history.claim(ENROL, SyncTrigger.API)
    second = history.claim(ENROL, SyncTrigger.SCHEDULE)
    assert first.started and not second.started
    assert f"sync run #{first.run_id}" in second.reason
    row = history.get(second.run_id)
    assert (row.status, row.trigger, row.skip_reason) == ("SKIPPED", "SCHEDULE", second.reason)
    # Other targets are independent.
    assert history.claim(USERS, SyncTrigger.API).started


def test_force_runs_beside_a_running_sync(history):
    assert history.claim(CATALOG, SyncTrigger.CLI).started
    forced = history.claim(CATALOG, SyncTrigger.CLI, force=True)
    assert forced.started
    assert history.get(forced.run_id).forced


def test_finish_frees_the_target_and_records_counts(history):
    claim = history.claim(USERS, SyncTrigger.CLI)
    owner = history.take(claim.run_id, "dagster-run-1")
    counts = RunCounts(fetched=10, inserted=7, updated=2, unchanged=1, rejected=1, requests=3)
    assert history.finish(owner, SyncStatus.SUCCESS, counts=counts)
    row = history.get(claim.run_id)
    assert (row.status, row.rows_fetched, row.rows_inserted, row.rows_rejected, row.requests_made) == (
        "SUCCESS", 10, 7, 1, 3,
    )
    assert row.dagster_run_id == "dagster-run-1"
    assert row.finished_at is not None and row.duration_seconds >= 0
    assert history.claim(USERS, SyncTrigger.CLI).started


def test_only_one_worker_can_take_a_claimed_row(history):
    claim = history.claim(ENROL, SyncTrigger.API)
    first = history.take(claim.run_id, "run-a")
    assert first is not None
    assert history.take(claim.run_id, "run-b") is None


def test_finish_moves_only_a_running_row_the_caller_owns(history):
    claim = history.claim(ENROL, SyncTrigger.CLI)
    owner = history.take(claim.run_id, "run-a")
    from moodle_assets.history import Ownership

    stranger = Ownership(claim.run_id, "not-the-token")
    assert not history.finish(stranger, SyncStatus.SUCCESS)
    assert not history.heartbeat(stranger)
    assert history.get(claim.run_id).status == "RUNNING"
    # Closed as a ghost meanwhile: the old worker can neither beat nor flip it to SUCCESS.
    later = utcnow() + timedelta(hours=1)
    assert history.reconcile_ghosts(now=later) == [claim.run_id]
    assert not history.heartbeat(owner)
    assert not history.finish(owner, SyncStatus.SUCCESS, counts=RunCounts(fetched=1))
    row = history.get(claim.run_id)
    assert row.status == "FAILED" and row.error.startswith("worker lost") and row.rows_fetched is None


def test_finish_refuses_statuses_a_sync_cannot_end_with(history):
    owner = history.take(history.claim(USERS, SyncTrigger.CLI).run_id, "run")
    with pytest.raises(ValueError, match="SUCCESS or FAILED"):
        history.finish(owner, SyncStatus.SKIPPED)


def test_stale_heartbeat_is_closed_as_worker_lost(history):
    then = utcnow() - timedelta(hours=1)
    ghost = history.claim(ENROL, SyncTrigger.SCHEDULE, now=then)
    fresh = history.claim(ENROL, SyncTrigger.CLI)
    assert fresh.started and fresh.closed_ghosts == (ghost.run_id,)
    row = history.get(ghost.run_id)
    assert row.status == "FAILED" and row.error.startswith("worker lost")


def test_ended_dagster_run_is_a_ghost_but_a_queued_one_is_not(history):
    queued = history.claim(ENROL, SyncTrigger.API, dagster_run_id="run-q")
    states = {"run-q": RunState.QUEUED}
    old = utcnow() + timedelta(hours=2)  # far past the heartbeat timeout
    assert history.reconcile_ghosts(run_state=states.get, now=old) == []
    states["run-q"] = RunState.OVER
    assert history.reconcile_ghosts(run_state=states.get) == [queued.run_id]
    assert "ended without closing" in history.get(queued.run_id).error


def test_heartbeat_keeps_a_run_alive_and_reports_closed_rows(history):
    claim = history.claim(CATALOG, SyncTrigger.CLI, now=utcnow() - timedelta(minutes=10))
    owner = history.take(claim.run_id, "run")
    assert history.heartbeat(owner)
    assert history.reconcile_ghosts() == []
    assert history.finish(owner, SyncStatus.FAILED, error="boom")
    assert not history.heartbeat(owner)


def test_heartbeat_interval_gives_three_beats_per_timeout(migrated_engine):
    assert SyncHistory(migrated_engine, heartbeat_timeout=180).heartbeat_interval == 10
    assert SyncHistory(migrated_engine, heartbeat_timeout=6).heartbeat_interval == 2


def test_concurrent_claims_start_exactly_one(history):
    results = []
    barrier = threading.Barrier(8)

    def claim():
        barrier.wait()
        results.append(history.claim(ENROL, SyncTrigger.API))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.started for r in results) == 1
    assert len(results) == 8
    assert len(history.recent(target=ENROL)) == 8


def test_error_text_is_redacted(history):
    register_secrets(["sekret-token-123"])
    owner = history.take(history.claim(USERS, SyncTrigger.CLI).run_id, "run")
    history.finish(owner, SyncStatus.FAILED, error="GET /x?wstoken=abc failed; token sekret-token-123")
    error = history.get(owner.run_id).error
    assert "sekret-token-123" not in error and "wstoken=abc" not in error and "[REDACTED]" in error


def test_unstarted_claims_are_failed_with_the_reason_but_taken_ones_are_left(history):
    a = history.claim(CATALOG, SyncTrigger.API)
    b = history.claim(USERS, SyncTrigger.API)
    history.take(b.run_id, "run")
    assert history.fail_unstarted([a.run_id, b.run_id], "launch failed: no code location") == [a.run_id]
    assert history.get(a.run_id).error == "launch failed: no code location"
    assert history.get(b.run_id).status == "RUNNING"


def test_skip_slot_moves_the_slot_once_and_records_it(history):
    from schedules.config_table import get_config, update_config

    update_config(history.engine, ENROL, enabled=True, frequency_minutes=30)
    slot = get_config(history.engine, ENROL).next_run_at
    following = slot + timedelta(minutes=30)
    first = history.skip_slot(ENROL, expected_next_run_at=slot, new_next_run_at=following, reason="busy")
    again = history.skip_slot(ENROL, expected_next_run_at=slot, new_next_run_at=following, reason="busy")
    assert first and again is None
    assert get_config(history.engine, ENROL).next_run_at == following
    row = history.get(first)
    assert (row.status, row.trigger, row.skip_reason) == ("SKIPPED", "SCHEDULE", "busy")
