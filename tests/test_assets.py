"""The assets through Dagster: history rows, metadata, checks, skips, failures without secrets."""
from __future__ import annotations

import logging

import pytest
import requests
from dagster import AssetKey, DagsterInstance

from moodle_assets.core.targets import SyncTarget, SyncTrigger
from moodle_assets.definitions import build_definitions
from moodle_assets.history import SyncHistory
from moodle_assets.settings import load_settings
from moodle_assets.store.db import engine_for
from moodle_assets.store.migrate import upgrade


@pytest.fixture
def instance(app_env, dagster_home):
    upgrade(load_settings().database_url)
    with DagsterInstance.get() as inst:
        yield inst


@pytest.fixture
def defs(app_env):
    """The code location as it loads for this test's deployment (emulator, temporary app DB)."""
    return build_definitions(load_settings())


def engine():
    return engine_for(load_settings().database_url)


def materialization(result, asset: str):
    events = [e for e in result.get_asset_materialization_events() if e.asset_key == AssetKey(asset)]
    return events[0].step_materialization_data.materialization if events else None


def test_sync_all_records_history_metadata_and_checks(defs, instance):
    result = defs.resolve_job_def("sync_all").execute_in_process(instance=instance, tags={"moodle/trigger": "GRAPHQL"})
    assert result.success
    runs = {r.target: r for r in SyncHistory(engine()).recent()}
    assert set(runs) == {"COURSE_CATALOG", "USER_DIRECTORY", "ENROLLMENTS"}
    assert all(r.status == "SUCCESS" and r.trigger == "GRAPHQL" and r.dagster_run_id == result.run_id for r in runs.values())
    assert runs["ENROLLMENTS"].rows_inserted == 22 and runs["ENROLLMENTS"].requests_made == 13  # + site info
    assert all(r.token_user_id == 2 and r.token_is_site_admin and r.warning is None for r in runs.values())
    meta = materialization(result, "enrollments").metadata
    assert meta["rows_inserted"].value == 22 and meta["requests"].value == 13
    assert meta["token_user"].value == "admin (Moodle user id 2, a site administrator)"
    assert meta["sync_run_id"].value == runs["ENROLLMENTS"].id
    checks = {(c.asset_key.to_user_string(), c.check_name): c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {
        ("course_catalog", "no_rejected_rows"): True,
        ("user_directory", "no_rejected_rows"): True,
        ("enrollments", "no_rejected_rows"): True,
        ("enrollments", "no_unmatched_enrollments"): True,
        ("course_catalog", "token_sees_everything"): True,
        ("user_directory", "token_sees_everything"): True,
        ("enrollments", "token_sees_everything"): True,
    }


def test_a_second_run_while_one_is_running_is_skipped(defs, instance):
    holder = SyncHistory(engine()).claim(SyncTarget.COURSE_CATALOG, SyncTrigger.API)
    result = defs.resolve_job_def("sync_course_catalog").execute_in_process(instance=instance)
    assert result.success
    assert materialization(result, "course_catalog") is None  # nothing synced
    latest = SyncHistory(engine()).recent(target="COURSE_CATALOG", limit=1)[0]
    assert latest.status == "SKIPPED" and latest.trigger == "MANUAL"
    assert f"#{holder.run_id}" in latest.skip_reason


def test_failed_sync_closes_the_row_with_a_readable_error_and_no_secret(defs, instance, app_env, caplog):
    requests.post(f"{app_env.url}/__emulator__/faults", json={"script": [{"fault": "http_503", "count": 100}]}, timeout=5)
    caplog.set_level(logging.DEBUG)
    result = defs.resolve_job_def("sync_user_directory").execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    run = SyncHistory(engine()).recent(target="USER_DIRECTORY", limit=1)[0]
    assert run.status == "FAILED" and run.finished_at is not None
    assert "503" in run.error and run.retries >= 1
    token = app_env.token
    assert token not in run.error
    assert token not in caplog.text
    for record in instance.all_logs(result.run_id):
        assert token not in (record.user_message or "")


def test_materialization_shows_the_runs_changes_from_the_change_log(defs, instance):
    from sqlalchemy import select

    from moodle_assets.store.db import transaction
    from moodle_assets.store.models import IntegrationChangeLog

    result = defs.resolve_job_def("sync_all").execute_in_process(instance=instance)
    assert result.success
    runs = {r.target: r for r in SyncHistory(engine()).recent()}
    meta = materialization(result, "enrollments").metadata
    assert meta["changes_total"].value == 22
    assert meta["changes_by_kind"].value == {"inserted": 22, "updated": 0, "deactivated": 0, "reactivated": 0}
    sample = meta["changes_sample"].value
    lines = sample.splitlines()
    assert lines[0] == "| entity | Moodle key | kind | columns |" and len([l for l in lines if l.startswith("| enrollment")]) == 10
    assert "… and 12 more" in sample
    with transaction(engine()) as s:
        logged = s.execute(
            select(IntegrationChangeLog.moodle_key).where(IntegrationChangeLog.run_id == runs["ENROLLMENTS"].id)
            .order_by(IntegrationChangeLog.id).limit(10)
        ).scalars().all()
    assert [l.split(" | ")[1] for l in lines[2:12]] == logged  # the sample is the run's first logged rows
    catalog = materialization(result, "course_catalog").metadata
    assert catalog["changes_by_entity"].value == {"category": 4, "course": 6}
    again = defs.resolve_job_def("sync_all").execute_in_process(instance=instance)
    meta = materialization(again, "user_directory").metadata
    assert meta["changes_total"].value == 0 and meta["changes_sample"].value == "_no changes_"
