"""A sync whose worker is SIGKILLed mid-run is reconciled on the very next schedule tick (its liveness
lock is free: no waiting for the heartbeat timeout), its Dagster run is marked failed, and nothing
was half-written."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
from dagster import DagsterInstance, DagsterRunStatus, SkipReason, build_sensor_context
from sqlalchemy import select

from moodle_assets.cli import main
from moodle_assets.history import SyncHistory
from moodle_assets.store.db import create_app_engine, transaction
from moodle_assets.store.models import CourseCatalog
from resources.app_db import AppDatabaseResource
from sensors import build_schedule_sensors
from moodle_assets.core.targets import SyncTarget
from tests.conftest import REPO_ROOT

TIMEOUT_S = 180  # the default: the tick must not need it


def catalog(engine):
    with transaction(engine) as s:
        return [(c.moodle_course_id, c.shortname, c.fullname, c.is_active) for c in s.scalars(select(CourseCatalog).order_by(CourseCatalog.moodle_course_id))]


def mid_fetch(engine, instance, emulator) -> bool:
    """The sync's Dagster run has started and Moodle is being asked (each call takes 300 ms)."""
    running = SyncHistory(engine).running()
    if not running or not running[0].dagster_run_id:
        return False
    run = instance.get_run_by_id(running[0].dagster_run_id)
    if run is None or run.status != DagsterRunStatus.STARTED:
        return False
    counters = requests.get(f"{emulator.url}/__emulator__/counters", timeout=5).json()
    return counters["requests_total"] > 0


def test_sigkilled_sync_is_reconciled_and_the_next_sync_runs(app_env, dagster_home, monkeypatch, tmp_path):
    monkeypatch.setenv("MOODLE_SYNC_HEARTBEAT_TIMEOUT_SECONDS", str(TIMEOUT_S))
    assert main(["sync", "--target", "COURSE_CATALOG"]) == 0
    engine = create_app_engine(os.environ["DATABASE_URL"])
    before = catalog(engine)
    assert len(before) == 6

    requests.post(f"{app_env.url}/__emulator__/faults", json={"latency_ms": 300}, timeout=5).raise_for_status()
    requests.post(f"{app_env.url}/__emulator__/counters/reset", timeout=5).raise_for_status()
    cli = Path(sys.executable).with_name("moodle-integration")
    log = tmp_path / "sync.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(cli), "sync", "--target", "COURSE_CATALOG"], cwd=REPO_ROOT, env=dict(os.environ),
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        with DagsterInstance.get() as instance:
            while not mid_fetch(engine, instance, app_env):
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "the sync never reached Moodle"
                time.sleep(0.05)
        assert proc.poll() is None, "the sync finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    requests.post(f"{app_env.url}/__emulator__/faults", json={}, timeout=5).raise_for_status()

    [ghost] = SyncHistory(engine).running()
    assert ghost.trigger == "CLI" and ghost.dagster_run_id and ghost.worker_pid == proc.pid

    with DagsterInstance.get() as instance:
        # Its Dagster run still says STARTED and its heartbeat is fresh (the worker died with
        # both), but its liveness lock went with the process: the very next tick closes it.
        assert instance.get_run_by_id(ghost.dagster_run_id).status == DagsterRunStatus.STARTED
        sensor = build_schedule_sensors(30)[SyncTarget.COURSE_CATALOG]
        resources = {"app_db": AppDatabaseResource(url=os.environ["DATABASE_URL"], heartbeat_timeout_seconds=TIMEOUT_S)}
        result = sensor(build_sensor_context(instance=instance, resources=resources))
        assert isinstance(result, SkipReason) and f"closed ghost sync run(s) #{ghost.id}" in result.skip_message
        # ... and says so in Dagster too, instead of a run STARTED for ever.
        run = instance.get_run_by_id(ghost.dagster_run_id)
        assert run.status == DagsterRunStatus.FAILURE
    assert SyncHistory(engine).running() == []
    closed = SyncHistory(engine).get(ghost.id)
    assert closed.status == "FAILED" and "liveness lock was free" in closed.error
    assert closed.error.startswith(f"worker lost: its worker (pid {proc.pid} on host ")
    assert catalog(engine) == before  # one transaction per target: the killed sync wrote nothing

    assert main(["sync", "--target", "COURSE_CATALOG"]) == 0
    latest = SyncHistory(engine).recent(target="COURSE_CATALOG", limit=1)[0]
    assert latest.status == "SUCCESS" and latest.trigger == "CLI"
    assert catalog(engine) == before
    engine.dispose()
