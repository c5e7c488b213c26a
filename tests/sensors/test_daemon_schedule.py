"""A real dagster-daemon runs the schedule sensor, which launches a due target against the emulator."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from dagster import DagsterInstance
from sqlalchemy import func, select

from moodle_assets.store.db import create_app_engine, transaction
from moodle_assets.store.migrate import upgrade
from moodle_assets.store.models import CourseCatalog
from moodle_assets.history import SyncHistory
from moodle_assets.core.targets import SyncTarget
from schedules.config_table import get_config, update_config
from tests.conftest import REPO_ROOT, write_dagster_home

WAIT_S = 90


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            raise AssertionError(f"dagster-daemon exited ({proc.returncode}) before {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}:\n{log.read_text()[-3000:]}")


def test_daemon_launches_a_due_target_on_schedule(app_env, tmp_path, monkeypatch):
    home = write_dagster_home(tmp_path / "dagster_home", run_coordinator="queued")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("MOODLE_SCHEDULE_SENSOR_INTERVAL_SECONDS", "2")
    url = os.environ["DATABASE_URL"]
    upgrade(url)
    engine = create_app_engine(url)
    update_config(engine, SyncTarget.COURSE_CATALOG, enabled=True, frequency_minutes=1)
    slot = get_config(engine, SyncTarget.COURSE_CATALOG).next_run_at

    daemon_bin = Path(sys.executable).with_name("dagster-daemon")
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(daemon_bin), "run", "-w", str(REPO_ROOT / "workspace.yaml")],
            cwd=REPO_ROOT, env=dict(os.environ), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        def finished():
            rows = [r for r in SyncHistory(engine).recent(target="COURSE_CATALOG") if r.status != "RUNNING"]
            return rows or None

        [row] = wait_for(finished, WAIT_S, "the scheduled COURSE_CATALOG sync", proc, log)
        assert (row.status, row.trigger) == ("SUCCESS", "SCHEDULE"), (row, log.read_text()[-3000:])
        assert row.rows_fetched > 0 and row.rows_inserted >= 6 and row.rows_rejected == 0 and row.requests_made > 0
        with transaction(engine) as s:
            assert s.scalar(select(func.count()).select_from(CourseCatalog)) == 6
        config = get_config(engine, SyncTarget.COURSE_CATALOG)
        # the next slot keeps the phase of the one taken (a run that started late on a loaded box
        # may have skipped a slot, but never shifts the rhythm)
        assert config.last_run_at is not None and config.next_run_at > config.last_run_at
        assert (config.next_run_at - slot) % timedelta(minutes=1) == timedelta(0)

        with DagsterInstance.get() as instance:
            run = instance.get_run_by_id(row.dagster_run_id)
            assert run.job_name == "sync_course_catalog"
            assert run.tags["moodle/trigger"] == "SCHEDULE" and run.tags["moodle/target"] == "COURSE_CATALOG"
            assert run.tags["dagster/sensor_name"] == "moodle_schedule_course_catalog"
            assert run.tags["dagster/run_key"] == f"COURSE_CATALOG:{slot.isoformat()}"
            # only one run for the slot, however many ticks saw it due while the run was queued
            assert len(instance.get_runs()) == 1
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        engine.dispose()
