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
