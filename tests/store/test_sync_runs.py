"""The sync history's rules: one RUNNING row per target, SKIPPED with a reason, no ghosts."""
from __future__ import annotations

import threading
from datetime import timedelta

from moodle_assets.store import sync_runs
from moodle_assets.core.clock import utcnow


def test_second_claim_is_skipped_with_reason(migrated_engine):
    first = sync_runs.claim_run(migrated_engine, "ENROLLMENTS", "API")
    second = sync_runs.claim_run(migrated_engine, "ENROLLMENTS", "SCHEDULE")
    assert first.started and not second.started
    assert f"sync run #{first.run_id}" in second.reason
    row = sync_runs.get_run(migrated_engine, second.run_id)
    assert row.status == "SKIPPED" and row.trigger == "SCHEDULE" and row.skip_reason == second.reason
    # Other targets are independent.
    assert sync_runs.claim_run(migrated_engine, "USER_DIRECTORY", "API").started


def test_force_runs_beside_a_running_sync(migrated_engine):
    assert sync_runs.claim_run(migrated_engine, "COURSE_CATALOG", "CLI").started
    forced = sync_runs.claim_run(migrated_engine, "COURSE_CATALOG", "CLI", force=True)
    assert forced.started
    assert sync_runs.get_run(migrated_engine, forced.run_id).forced


def test_finish_frees_the_target_and_records_counts(migrated_engine):
    claim = sync_runs.claim_run(migrated_engine, "USER_DIRECTORY", "CLI")
    counts = sync_runs.RunCounts(fetched=10, inserted=7, updated=2, unchanged=1, rejected=1, requests=3)
    sync_runs.finish_run(migrated_engine, claim.run_id, status="SUCCESS", counts=counts)
    row = sync_runs.get_run(migrated_engine, claim.run_id)
    assert (row.status, row.rows_fetched, row.rows_inserted, row.rows_rejected, row.requests_made) == ("SUCCESS", 10, 7, 1, 3)
    assert row.finished_at is not None and row.duration_seconds >= 0
    assert sync_runs.claim_run(migrated_engine, "USER_DIRECTORY", "CLI").started


def test_stale_heartbeat_is_closed_as_worker_lost(migrated_engine):
    then = utcnow() - timedelta(hours=1)
    ghost = sync_runs.claim_run(migrated_engine, "ENROLLMENTS", "SCHEDULE", now=then)
    fresh = sync_runs.claim_run(migrated_engine, "ENROLLMENTS", "CLI")
    assert fresh.started and fresh.closed_ghosts == (ghost.run_id,)
    row = sync_runs.get_run(migrated_engine, ghost.run_id)
    assert row.status == "FAILED" and row.error.startswith("worker lost")


def test_ended_dagster_run_is_a_ghost_but_a_queued_one_is_not(migrated_engine):
    queued = sync_runs.claim_run(migrated_engine, "ENROLLMENTS", "API", dagster_run_id="run-q")
    states = {"run-q": sync_runs.QUEUED}
    old = utcnow() + timedelta(hours=2)  # far past the heartbeat timeout
    assert sync_runs.reconcile_ghosts(migrated_engine, run_state=states.get, now=old) == []
    states["run-q"] = sync_runs.OVER
    assert sync_runs.reconcile_ghosts(migrated_engine, run_state=states.get) == [queued.run_id]
    assert "ended without closing" in sync_runs.get_run(migrated_engine, queued.run_id).error


def test_heartbeat_keeps_a_run_alive_and_reports_closed_rows(migrated_engine):
    claim = sync_runs.claim_run(migrated_engine, "COURSE_CATALOG", "CLI", now=utcnow() - timedelta(minutes=10))
    assert sync_runs.heartbeat(migrated_engine, claim.run_id)
    assert sync_runs.reconcile_ghosts(migrated_engine) == []
    sync_runs.finish_run(migrated_engine, claim.run_id, status="FAILED", error="boom")
    assert not sync_runs.heartbeat(migrated_engine, claim.run_id)


def test_concurrent_claims_start_exactly_one(migrated_engine):
    results = []
    barrier = threading.Barrier(8)

    def claim():
        barrier.wait()
        results.append(sync_runs.claim_run(migrated_engine, "ENROLLMENTS", "API"))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.started for r in results) == 1
    assert len(results) == 8
    assert len(sync_runs.list_runs(migrated_engine, target="ENROLLMENTS")) == 8


def test_error_text_is_redacted(migrated_engine, monkeypatch):
    monkeypatch.setenv("MOODLE_TOKEN", "sekret-token-123")
    claim = sync_runs.claim_run(migrated_engine, "USER_DIRECTORY", "CLI")
    sync_runs.finish_run(migrated_engine, claim.run_id, status="FAILED", error="GET /x?wstoken=abc failed; token sekret-token-123")
    error = sync_runs.get_run(migrated_engine, claim.run_id).error
    assert "sekret-token-123" not in error and "wstoken=abc" not in error
