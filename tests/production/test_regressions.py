"""Regression tests for product bugs found by the production suite."""
from __future__ import annotations

import time

import pytest


def test_a_short_heartbeat_timeout_does_not_close_a_healthy_sync_as_a_ghost(sqlite_url):
    """MOODLE_SYNC_HEARTBEAT_TIMEOUT_SECONDS accepts 5 s, but running syncs beat every 10 s: any
    healthy sync longer than the timeout was closed FAILED "worker lost" by the next sensor tick
    (found when a sync riding out a Retry-After took 6 s under a 5 s timeout)."""
    from moodle_assets.core.targets import SyncTarget, SyncTrigger
    from moodle_assets.history import SyncHistory
    from moodle_assets.history.runs import HEARTBEAT_INTERVAL_S
    from moodle_assets.orchestration.assets import _Heartbeat
    from moodle_assets.store.db import create_app_engine
    from moodle_assets.store.migrate import upgrade

    upgrade(sqlite_url)
    engine = create_app_engine(sqlite_url)
    history = SyncHistory(engine, heartbeat_timeout=5)
    claim = history.claim(SyncTarget.COURSE_CATALOG, SyncTrigger.API)
    owner = history.take(claim.run_id, "run")
    assert claim.started and owner is not None
    with _Heartbeat(history, owner) as beat:
        assert beat.interval <= 5 / 3
        time.sleep(6.5)  # longer than the timeout
        assert history.reconcile_ghosts() == []
        assert not beat.lost.is_set()
    assert history.get(claim.run_id).status == "RUNNING"
    assert SyncHistory(engine).heartbeat_interval == pytest.approx(HEARTBEAT_INTERVAL_S)
    engine.dispose()


def test_a_run_that_waited_in_the_queue_longer_than_the_timeout_is_not_a_ghost_when_it_starts(sqlite_url):
    """The claim's heartbeat was only refreshed by the asset, so the time a run spent QUEUED
    (daemon down during a deploy, queue full) counted against the heartbeat timeout: when the
    run finally started, the next sensor tick closed its row FAILED "worker lost" before the
    asset's first beat (found with three runs starting at once on a 2-core box)."""
    from datetime import timedelta

    from moodle_assets.core.clock import utcnow
    from moodle_assets.core.targets import SyncTarget, SyncTrigger
    from moodle_assets.history import RunState, SyncHistory
    from moodle_assets.store.db import create_app_engine
    from moodle_assets.store.migrate import upgrade

    upgrade(sqlite_url)
    engine = create_app_engine(sqlite_url)
    timeout = timedelta(seconds=180)
    history = SyncHistory(engine, heartbeat_timeout=timeout)
    t0 = utcnow() - timedelta(minutes=30)
    claim = history.claim(SyncTarget.ENROLLMENTS, SyncTrigger.API, dagster_run_id="run-1", now=t0)
    state = {"run-1": RunState.QUEUED}
    # queued for 10 minutes: never a ghost
    later = t0 + timedelta(minutes=10)
    assert history.reconcile_ghosts(run_state=state.get, now=later) == []
    # the daemon dequeues it; the worker is starting, the asset has not beaten yet
    state["run-1"] = RunState.RUNNING
    assert history.reconcile_ghosts(run_state=state.get, now=later + timedelta(seconds=20)) == []
    assert history.get(claim.run_id).status == "RUNNING"
    # ... but a worker that really never beats is still closed once the timeout has passed
    closed = history.reconcile_ghosts(run_state=state.get, now=later + timeout + timedelta(seconds=1))
    assert closed == [claim.run_id]
    engine.dispose()


def test_app_database_unreachable_is_a_503_that_says_so_not_a_500(tmp_path, monkeypatch):
    """With the app DB down, the trigger and the admin page answered a bare
    "500 Internal Server Error" (found by stopping the app DB's PostgreSQL server under the
    split deployment). Now: 503 + Retry-After, JSON for the API, the error page for browsers."""
    import requests
    from dagster import DagsterInstance

    from moodle_assets.orchestration.instance import WORKSPACE_FILE
    from moodle_assets.settings import load_settings
    from moodle_assets.web.app import create_app, workspace_context
    from moodle_assets.web.serve import BackgroundServer

    secret = "regression-secret-0a1b2c"
    monkeypatch.setenv("MOODLE_SYNC_CRON_SECRET", secret)
    monkeypatch.setenv("MOODLE_INTEGRATION_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MOODLE_URL", "http://127.0.0.1:9")
    # a PostgreSQL socket directory where no server listens
    monkeypatch.setenv("DATABASE_URL", f"postgresql+psycopg2://postgres:@/app?host={tmp_path}")
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with DagsterInstance.get() as instance, workspace_context(instance, WORKSPACE_FILE) as context:
        with BackgroundServer(create_app(context, load_settings())) as server:
            r = requests.post(server.url + "/api/integration/moodle/sync", headers={"x-sync-secret": secret}, timeout=30)
            assert r.status_code == 503, r.text
            assert "database is unreachable" in r.json()["error"] and r.headers["Retry-After"]
            page = requests.get(server.url + "/dashboard/admin/integration", timeout=30)
            assert page.status_code == 503 and "Database unavailable" in page.text
            # the checks before any database access still come first
            assert requests.post(server.url + "/api/integration/moodle/sync", timeout=30).status_code == 401


def test_a_deeply_nested_trigger_body_is_a_400_not_a_500():
    """A 16 KiB body holds ~8,000 nested brackets; json.loads raised RecursionError, which the
    trigger did not catch: a 500 (found by the hypothesis bad-input suite)."""
    from moodle_assets.web.trigger import BadRequest, parse_body

    for body in (b"[" * 5000 + b"]" * 5000, b'{"targets": ' + b"[" * 3000 + b"]" * 3000 + b"}"):
        with pytest.raises(BadRequest, match="nested too deeply"):
            parse_body(body)


@pytest.mark.parametrize("text", ["²", "١٢", "9" * 5000, "0" * 10 + "9" * 10])
def test_admin_frequency_with_unicode_digits_or_thousands_of_digits_is_a_validation_error(text):
    """parse_frequency trusted str.isdigit(), which accepts "²" and Arabic-Indic digits that
    int() refuses, and int() refuses strings over 4,300 digits: a ValueError the admin page did
    not catch, so a 500 (found by the hypothesis bad-input suite)."""
    from schedules.config_table import ConfigValidationError, parse_frequency

    with pytest.raises(ConfigValidationError):
        parse_frequency(text)
    assert parse_frequency("0060") == 60 and parse_frequency(" 43200 ") == 43200


def test_non_ascii_csrf_tokens_and_signed_cookies_are_refused_not_a_500():
    """hmac.compare_digest raises TypeError for str with non-ASCII characters, so a form whose
    csrf_token had one (or a flash/session cookie with one) made the admin page answer 500
    (found by the hypothesis bad-input suite: csrf_token="²")."""
    from moodle_assets.web.security import csrf_token_for, csrf_valid, new_csrf_nonce, sign, unsign

    key, nonce = b"k" * 32, new_csrf_nonce()
    assert csrf_valid(key, nonce, csrf_token_for(key, nonce))
    for bad in ("²", "é" * 43, "\udcff", csrf_token_for(key, nonce)[:-1] + "ß"):
        assert not csrf_valid(key, nonce, bad)
        body, expires, _ = sign(key, "flash", {"a": 1}, 60).split(".")
        assert unsign(key, "flash", f"{body}.{expires}.{bad}") is None
