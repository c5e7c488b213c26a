"""A history that tells the truth, through Dagster on SQLite: counts that add up (row, metadata),
ENROLLMENTS refused before its upstream ever synced, and "not run: upstream failed" recorded by the
failing step itself (no run-status sensor runs here), not left RUNNING. (The unmatched-enrollments
flag moved here from test_assets.py: its set-up, enrollments before users, is now refused.)"""
from __future__ import annotations

import pytest
import requests
from dagster import AssetKey, DagsterInstance
from sqlalchemy import delete, select

from moodle_assets.definitions import build_definitions
from moodle_assets.history import SyncHistory
from moodle_assets.settings import load_settings
from moodle_assets.store.db import engine_for, transaction
from moodle_assets.store.migrate import upgrade
from moodle_assets.store.models import User, UserCourseEnrollment

NEVER_SYNCED = (
    "courses and users have never been synced: run COURSE_CATALOG and USER_DIRECTORY first (or sync all)"
)


@pytest.fixture
def instance(app_env, dagster_home):
    upgrade(load_settings().database_url)
    with DagsterInstance.get() as inst:
        yield inst


@pytest.fixture
def defs(app_env):
    return build_definitions(load_settings())


def history() -> SyncHistory:
    return SyncHistory(engine_for(load_settings().database_url))


def run(defs, instance, job: str):
    return defs.resolve_job_def(job).execute_in_process(instance=instance, raise_on_error=False)


def metadata(result, asset: str) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == AssetKey(asset)]
    return {k: v.value for k, v in event.step_materialization_data.materialization.metadata.items()}


def test_counts_add_up_on_the_row_and_in_the_metadata(defs, instance):
    result = run(defs, instance, "sync_all")
    assert result.success
    rows = {r.target: r for r in history().recent()}
    for target, asset in (("COURSE_CATALOG", "course_catalog"), ("USER_DIRECTORY", "user_directory"),
                          ("ENROLLMENTS", "enrollments")):
        row, meta = rows[target], metadata(result, asset)
        parts = (row.rows_inserted, row.rows_updated, row.rows_unchanged, row.rows_rejected, row.rows_skipped)
        assert row.rows_fetched == sum(parts) and row.counts_add_up is True, (target, row)
        assert meta["rows_fetched"] == sum(meta[f"rows_{n}"] for n in
                                           ("inserted", "updated", "unchanged", "rejected", "skipped"))
        assert meta["rows"] == row.breakdown and meta["rows"].startswith(f"fetched {row.rows_fetched} = inserted ")
        # the sync's own time and the wait before it, apart
        assert row.duration_seconds is not None and row.queued_seconds is not None
        assert row.duration_seconds == pytest.approx((row.finished_at - row.worker_started_at).total_seconds())
    # The real capture site has a site course and a guest user: skipped on purpose, and counted.
    assert rows["COURSE_CATALOG"].rows_skipped >= 1 and rows["USER_DIRECTORY"].rows_skipped >= 1

    again = run(defs, instance, "sync_all")
    assert again.success
    second = {r.target: r for r in history().recent(limit=3)}
    assert all(r.counts_add_up for r in second.values())
    assert all(r.rows_unchanged == r.rows_fetched - r.rows_skipped - r.rows_rejected for r in second.values())


def test_enrollments_of_unknown_users_are_skipped_and_the_sum_holds(defs, instance):
    assert run(defs, instance, "sync_all").success
    with transaction(engine_for(load_settings().database_url)) as s:
        some = s.scalars(select(User.id).limit(2)).all()
        s.execute(delete(UserCourseEnrollment).where(UserCourseEnrollment.user_id.in_(some)))
        s.execute(delete(User).where(User.id.in_(some)))
    result = run(defs, instance, "sync_enrollments")
    assert result.success
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks["no_unmatched_enrollments"] is False  # flagged, and counted as skipped
    row = history().recent(target="ENROLLMENTS", limit=1)[0]
    assert row.rows_unmatched >= 1 and row.rows_skipped >= row.rows_unmatched and row.counts_add_up is True


def test_enrollments_before_its_upstream_ever_synced_is_refused_without_a_request(defs, instance, app_env):
    result = run(defs, instance, "sync_enrollments")
    assert not result.success
    row = history().recent(target="ENROLLMENTS", limit=1)[0]
    assert row.status == "FAILED" and row.error == NEVER_SYNCED
    assert row.requests_made is None and row.rows_fetched is None and not row.has_counts
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert NEVER_SYNCED in failure.step_failure_data.error.message or NEVER_SYNCED in str(failure.event_specific_data)

    # Catalog alone: users are still missing, and the reason says only that.
    assert run(defs, instance, "sync_course_catalog").success
    assert not run(defs, instance, "sync_enrollments").success
    row = history().recent(target="ENROLLMENTS", limit=1)[0]
    assert row.error == "users have never been synced: run USER_DIRECTORY first (or sync all)"

    assert run(defs, instance, "sync_user_directory").success
    assert run(defs, instance, "sync_enrollments").success
    assert history().recent(target="ENROLLMENTS", limit=1)[0].status == "SUCCESS"


def test_an_upstream_failure_closes_enrollments_at_once_as_not_run(defs, instance, app_env):
    requests.post(f"{app_env.url}/__emulator__/faults", timeout=5, json={
        "script": [{"fault": "http_503", "count": 1000, "wsfunction": "core_user_get_users_by_field"}]})
    result = run(defs, instance, "sync_all")
    assert not result.success
    rows = {r.target: r for r in history().recent()}
    assert rows["USER_DIRECTORY"].status == "FAILED"
    enrol = rows["ENROLLMENTS"]
    # Closed by the failing step (this process runs no sensor), in the same Dagster run.
    assert enrol.status == "FAILED" and enrol.finished_at is not None and enrol.dagster_run_id == result.run_id
    assert enrol.error == "not run: upstream failed (USER_DIRECTORY failed in the same Dagster run)"
    assert not history().running()
