"""Fault injection against the production deployment (three processes, PostgreSQL), all on
localhost and bounded in time: a run worker SIGKILLed mid-sync, the app database going
away, and a Moodle that suddenly returns empty lists.

Each scenario checks the same three things: the failure is recorded clearly (a FAILED history
row saying why, the Dagster run FAILURE), nothing was half-written (tables compared row by
row with a snapshot), and the next sync just works.
"""
from __future__ import annotations

import os
import signal
import time

import pytest
import requests

from production_stack import snapshot, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

ALL = ["COURSE_CATALOG", "USER_DIRECTORY", "ENROLLMENTS"]


def visible_courses(prod, n: int) -> list[int]:
    """Ids of `n` visible courses not hidden by an earlier test (the emulator is shared)."""
    ids = [c.id for c in sorted(prod.emulator.dataset.courses.values(), key=lambda c: -c.id) if c.id != 1 and c.visible]
    return ids[:n]


def trigger_each(prod, targets) -> dict[str, int]:
    """One trigger call per target, so each gets its own run (they run side by side)."""
    ids = {}
    for target in targets:
        r = prod.trigger({"targets": [target]})
        assert r.status_code == 202, r.text
        [entry] = r.json()
        assert entry["outcome"] == "LAUNCHED", entry
        ids[target] = entry["sync_run_id"]
    return ids


def closed_rows(prod, ids: dict[str, int], timeout: float = 120) -> dict:
    rows = prod.wait_rows_closed(list(ids.values()), timeout)
    return {t: rows[i] for t, i in ids.items()}


def baseline(prod) -> None:
    rows = prod.sync_now(ALL)
    assert {r.status for r in rows.values()} == {"SUCCESS"}, {t: r.error for t, r in rows.items()}


# --- the run worker SIGKILLed mid-sync --------------------------------------------------------


def run_worker_pid(prod, dagster_run_id: str) -> int | None:
    """The pid the code server logged when it started the run's worker process."""
    import re

    for record in prod.instance.all_logs(dagster_run_id):
        match = re.search(r"Started process for run \(pid: (\d+)\)", record.message or "")
        if match:
            return int(match.group(1))
    return None


def test_run_worker_sigkilled_mid_sync_through_trigger_and_daemon(prod):
    """The existing killed-worker test covers `moodle-integration sync`; this is the
    web trigger → daemon queue → code server → run worker path, on PostgreSQL."""
    from moodle_assets.history import SyncHistory

    rows = prod.sync_now(["COURSE_CATALOG"])
    assert rows["COURSE_CATALOG"].status == "SUCCESS", rows["COURSE_CATALOG"].error
    before = snapshot(prod.engine)
    # Something for the killed sync to change, so a partial write would show.
    requests.post(f"{prod.emulator.url}/__emulator__/mutate", timeout=10,
                  json={"ops": [{"op": "hide_course", "course_id": c} for c in visible_courses(prod, 2)]}).raise_for_status()
    prod.emulator_faults({"latency_ms": 400})
    r = prod.trigger({"targets": ["COURSE_CATALOG"]})
    assert r.status_code == 202, r.text
    [entry] = r.json()
    row_id, run_id = entry["sync_run_id"], entry["dagster_run_id"]
    prod.emulator_counters(reset=True)

    def worker_mid_fetch():
        pid = run_worker_pid(prod, run_id)
        return pid if pid and prod.emulator_counters()["requests_total"] > 0 else None

    pid = wait_until(worker_mid_fetch, 90, "the run worker to reach Moodle", alive=prod.check_alive)
    assert SyncHistory(prod.engine).get(row_id).status == "RUNNING"
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    prod.emulator_faults({})

    # Reconciled without anyone's help: the daemon's run monitoring marks the Dagster run
    # failed (worker gone) and the failure sensor closes the row, or the schedule sensor's
    # heartbeat check closes it as a ghost, whichever comes first.
    [row] = prod.wait_rows_closed([row_id], timeout=90).values()
    reconcile_s = time.monotonic() - killed_at
    assert row.status == "FAILED", row
    assert row.error and ("worker lost" in row.error or "failed" in row.error.lower()), row.error
    assert prod.wait_dagster_run(run_id, timeout=90) in ("FAILURE", "CANCELED")
    assert SyncHistory(prod.engine).running() == []
    assert snapshot(prod.engine) == before  # one transaction per target: nothing half-written
    print(f"\nkilled run worker pid {pid}: row #{row_id} closed FAILED after {reconcile_s:.1f} s: {row.error[:160]}")

    rows = prod.sync_now(["COURSE_CATALOG"])
    assert rows["COURSE_CATALOG"].status == "SUCCESS", rows["COURSE_CATALOG"].error
    assert rows["COURSE_CATALOG"].rows_updated == 2  # the two changes land now


# --- a Moodle that suddenly returns empty lists --------------------------------------------------


def test_empty_lists_trip_the_mass_deactivation_guard_end_to_end(prod):
    baseline(prod)
    before = snapshot(prod.engine)
    prod.emulator_faults({"empty_lists": True})
    rows = closed_rows(prod, trigger_each(prod, ALL))  # three runs side by side
    prod.wait_idle()  # each asset closes its row just before its Dagster run records the failure
    for target, row in rows.items():
        assert row.status == "FAILED", (target, row)
        assert "refusing to mark" in row.error and "nothing was written" in row.error, row.error
        assert "MOODLE_SYNC_MAX_DEACTIVATE_FRACTION" in row.error
        assert prod.instance.get_run_by_id(row.dagster_run_id).status.value == "FAILURE"
    assert snapshot(prod.engine) == before
    prod.emulator_faults({})
    rows = prod.sync_now(ALL)
    assert {r.status for r in rows.values()} == {"SUCCESS"}
    assert all(r.rows_deactivated == 0 and r.rows_inserted == 0 for r in rows.values())


# --- the app database unreachable for a while ---------------------------------------------------


def test_app_database_unreachable_then_back(prod):
    """The app DB's PostgreSQL server is stopped for a while (Dagster's storage stays up):
    every front door says so clearly, the run launched meanwhile fails and is recorded once
    the DB is back, a scheduled slot that fell due during the outage runs on the next tick,
    and no data is lost."""
    from datetime import timedelta

    from sqlalchemy import update

    from moodle_assets.store.db import transaction
    from moodle_assets.store.models import IntegrationSyncConfig
    from moodle_assets.core.clock import utcnow
    from moodle_assets.core.targets import SyncTarget
    from schedules.config_table import update_config

    from production_stack import ADMIN, SYNC_SECRET, WEB_TOKEN

    rows = prod.sync_now(["COURSE_CATALOG"])
    assert rows["COURSE_CATALOG"].status == "SUCCESS"
    before = snapshot(prod.engine)
    # USER_DIRECTORY is scheduled and falls due while the database is down.
    update_config(prod.engine, SyncTarget.USER_DIRECTORY, enabled=True, frequency_minutes=60)
    due_at = utcnow() + timedelta(seconds=6)
    with transaction(prod.engine) as s:
        s.execute(update(IntegrationSyncConfig).where(IntegrationSyncConfig.target == "USER_DIRECTORY").values(next_run_at=due_at))
    history_before = {r.id for r in prod.history()}
    prod.engine.dispose()

    prod.app_pg.stop()
    outage_started = time.monotonic()
    try:
        r = prod.trigger({"targets": ["COURSE_CATALOG"]})
        trigger_answer = (r.status_code, r.text)
        page = requests.get(prod.url + ADMIN, headers={"Authorization": f"Bearer {WEB_TOKEN}"}, timeout=30)
        admin_answer = (page.status_code, page.text[:300])
        graphql_run = prod.launch_graphql("sync_course_catalog", "COURSE_CATALOG")
        assert prod.wait_dagster_run(graphql_run, timeout=90) == "FAILURE"
        time.sleep(max(0.0, 10 - (time.monotonic() - outage_started)))  # past the slot, a few sensor ticks fail
        prod.check_alive()  # nothing crashed
    finally:
        prod.app_pg.start()
    outage_s = time.monotonic() - outage_started
    print(f"\napp DB down {outage_s:.1f} s: trigger -> {trigger_answer[0]} {trigger_answer[1][:200]}; admin -> {admin_answer[0]}")
    assert trigger_answer[0] == 503, trigger_answer
    assert "database" in trigger_answer[1].lower() and SYNC_SECRET not in trigger_answer[1]
    assert admin_answer[0] == 503, admin_answer

    # The GraphQL run launched meanwhile failed in Dagster, saying why (the run page shows it).
    # Known gap: Dagster's run-failure sensor advances its cursor even when our handler fails,
    # so a run that never claimed a row (GraphQL, launchpad) and failed while the DB was down
    # gets no history row; the Dagster UI has it. (Trigger and admin page refuse with 503, and
    # the schedule sensor cannot launch without the DB, so those never create such runs.)
    messages = " ".join(e.dagster_event.step_failure_data.error.to_string() for e in prod.instance.all_logs(graphql_run)
                        if e.dagster_event is not None and e.dagster_event.is_step_failure)
    assert "connection to server" in messages or "could not connect" in messages.lower(), messages[-2000:]
    # ... the slot that fell due during the outage runs on the next tick, ...
    def scheduled():
        return [r for r in prod.history("USER_DIRECTORY") if r.trigger == "SCHEDULE" and r.status != "RUNNING"]

    try:
        [ran] = wait_until(scheduled, 60, "the scheduled USER_DIRECTORY sync", alive=prod.check_alive)
        assert ran.status == "SUCCESS", ran
    finally:
        update_config(prod.engine, SyncTarget.USER_DIRECTORY, enabled=False)
    # ... and the trigger works again. Nothing was lost.
    rows = prod.sync_now(["COURSE_CATALOG"])
    assert rows["COURSE_CATALOG"].status == "SUCCESS" and rows["COURSE_CATALOG"].rows_inserted == 0
    after = snapshot(prod.engine)
    assert after["course_catalog"] == before["course_catalog"] and after["course_category"] == before["course_category"]
    new = [r for r in prod.history() if r.id not in history_before]
    assert all(r.status != "RUNNING" for r in new)
