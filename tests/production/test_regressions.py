"""Regression tests for product bugs found by the production suite."""
from __future__ import annotations

import time

import pytest


def test_a_short_heartbeat_timeout_does_not_close_a_healthy_sync_as_a_ghost(sqlite_url, monkeypatch):
    """MOODLE_SYNC_HEARTBEAT_TIMEOUT_SECONDS accepts 5 s, but running syncs beat every 10 s: any
    healthy sync longer than the timeout was closed FAILED "worker lost" by the next sensor tick
    (found when a sync riding out a Retry-After took 6 s under a 5 s timeout)."""
    from moodle_assets.assets import _Heartbeat
    from moodle_assets.store import sync_runs
    from moodle_assets.store.db import create_app_engine
    from moodle_assets.store.migrate import upgrade

    monkeypatch.setenv(sync_runs.HEARTBEAT_TIMEOUT_ENV, "5")
    upgrade(sqlite_url)
    engine = create_app_engine(sqlite_url)
    claim = sync_runs.claim_run(engine, "COURSE_CATALOG", "API")
    assert claim.started
    with _Heartbeat(engine, claim.run_id) as beat:
        assert beat.interval <= 5 / 3
        time.sleep(6.5)  # longer than the timeout
        assert sync_runs.reconcile_ghosts(engine) == []
    assert sync_runs.get_run(engine, claim.run_id).status == "RUNNING"
    monkeypatch.delenv(sync_runs.HEARTBEAT_TIMEOUT_ENV)
    assert sync_runs.heartbeat_interval_seconds() == pytest.approx(sync_runs.HEARTBEAT_INTERVAL_S)
    engine.dispose()


def test_a_run_that_waited_in_the_queue_longer_than_the_timeout_is_not_a_ghost_when_it_starts(sqlite_url):
    """The claim's heartbeat was only refreshed by the asset, so the time a run spent QUEUED
    (daemon down during a deploy, queue full) counted against the heartbeat timeout: when the
    run finally started, the next sensor tick closed its row FAILED "worker lost" before the
    asset's first beat (found with three runs starting at once on a 2-core box)."""
    from datetime import timedelta

    from moodle_assets.store import sync_runs
    from moodle_assets.store.db import create_app_engine
    from moodle_assets.store.migrate import upgrade
    from moodle_assets.store.types import utcnow

    upgrade(sqlite_url)
    engine = create_app_engine(sqlite_url)
    timeout = timedelta(seconds=180)
    t0 = utcnow() - timedelta(minutes=30)
    claim = sync_runs.claim_run(engine, "ENROLLMENTS", "API", dagster_run_id="run-1", now=t0)
    state = {"run-1": sync_runs.QUEUED}
    # queued for 10 minutes: never a ghost
    later = t0 + timedelta(minutes=10)
    assert sync_runs.reconcile_ghosts(engine, run_state=state.get, now=later, timeout=timeout) == []
    # the daemon dequeues it; the worker is starting, the asset has not beaten yet
    state["run-1"] = sync_runs.RUNNING
    assert sync_runs.reconcile_ghosts(engine, run_state=state.get, now=later + timedelta(seconds=20), timeout=timeout) == []
    assert sync_runs.get_run(engine, claim.run_id).status == "RUNNING"
    # ... but a worker that really never beats is still closed once the timeout has passed
    assert sync_runs.reconcile_ghosts(engine, run_state=state.get, now=later + timeout + timedelta(seconds=1), timeout=timeout) == [claim.run_id]
    engine.dispose()
