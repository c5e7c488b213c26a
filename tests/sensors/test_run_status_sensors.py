"""Failed or canceled Dagster runs leave no RUNNING row and no gap in the sync history."""
from __future__ import annotations

from dagster import DagsterEventType, DagsterRunStatus, build_run_status_sensor_context
from dagster._core.test_utils import create_run_for_test

from moodle_assets.core.redaction import register_secrets
from moodle_assets.core.targets import SyncTarget, SyncTrigger
from moodle_assets.definitions import build_definitions
from moodle_assets.settings import load_settings
from sensors.run_status import build_run_status_sensors, close_ended_run, run_targets


def test_targets_of_a_run_come_from_its_selection_tags_or_job(instance):
    def run(job, **kw):
        return create_run_for_test(instance, job_name=job, **kw)

    assert [t.value for t in run_targets(run("sync_enrollments"))] == ["ENROLLMENTS"]
    assert len(run_targets(run("sync_all"))) == 3
    assert [t.value for t in run_targets(run("sync_all", tags={"moodle/target": "ENROLLMENTS,COURSE_CATALOG"}))] == [
        "COURSE_CATALOG", "ENROLLMENTS",
    ]
    assert run_targets(run("somebody_elses_job")) == []


def test_failed_run_closes_its_running_row_redacted_and_records_targets_it_never_started(instance, history):
    register_secrets(["tok-very-secret-123"])
    dagster_run = create_run_for_test(
        instance, job_name="sync_all", tags={"moodle/target": "COURSE_CATALOG,ENROLLMENTS", "moodle/trigger": "API"},
        status=DagsterRunStatus.FAILURE,
    )
    running = history.claim(SyncTarget.COURSE_CATALOG, SyncTrigger.API, dagster_run_id=dagster_run.run_id)
    touched = close_ended_run(
        history, dagster_run, canceled=False,
        message=f"Dagster run {dagster_run.run_id} failed: GET https://lms/x?wstoken=tok-very-secret-123 refused",
    )
    assert touched["closed"] == [running.run_id]
    closed = history.get(running.run_id)
    assert closed.status == "FAILED" and "tok-very-secret-123" not in closed.error and "[REDACTED]" in closed.error
    [never] = [history.get(i) for i in touched["recorded"]]
    assert (never.target, never.status, never.trigger, never.dagster_run_id) == ("ENROLLMENTS", "FAILED", "API", dagster_run.run_id)
    assert never.error.startswith("not started: Dagster run") and "tok-very-secret-123" not in never.error
    # idempotent: a second evaluation of the same run touches nothing
    assert close_ended_run(history, dagster_run, canceled=False, message="again") == {"closed": [], "recorded": []}


def test_canceled_run_records_skipped_rows_for_targets_it_never_started(instance, history):
    dagster_run = create_run_for_test(instance, job_name="sync_user_directory", tags={"moodle/trigger": "SCHEDULE"})
    touched = close_ended_run(history, dagster_run, canceled=True, message=f"Dagster run {dagster_run.run_id} was canceled")
    [row] = [history.get(i) for i in touched["recorded"]]
    assert (row.target, row.status, row.trigger) == ("USER_DIRECTORY", "SKIPPED", "SCHEDULE")
    assert "was canceled" in row.skip_reason


def test_failure_sensor_on_a_real_failed_run(instance, history, db_resource, db_url, monkeypatch):
    """A scheduled run that fails before its asset starts (bad MOODLE_URL) gets a FAILED row with the reason."""
    # The resource reads MOODLE_URL and MOODLE_TOKEN from the environment when the run starts (EnvVar).
    monkeypatch.setenv("MOODLE_URL", "ftp://lms.example.edu")
    monkeypatch.setenv("MOODLE_TOKEN", "tok-abcdef-999")
    register_secrets(["tok-abcdef-999"])
    defs = build_definitions(load_settings({"DATABASE_URL": db_url}))
    result = defs.resolve_job_def("sync_course_catalog").execute_in_process(
        instance=instance, raise_on_error=False, tags={"moodle/target": "COURSE_CATALOG", "moodle/trigger": "SCHEDULE"}
    )
    assert not result.success
    dagster_run = instance.get_run_by_id(result.run_id)
    [record] = instance.get_records_for_run(result.run_id, of_type=DagsterEventType.RUN_FAILURE).records
    context = build_run_status_sensor_context(
        sensor_name="moodle_run_failure_sensor", dagster_event=record.event_log_entry.dagster_event,
        dagster_instance=instance, dagster_run=dagster_run,
    ).for_run_failure()
    failure_sensor, _canceled = build_run_status_sensors(30)
    failure_sensor(context, app_db=db_resource)
    [row] = history.recent(target=SyncTarget.COURSE_CATALOG)
    assert (row.status, row.trigger, row.dagster_run_id) == ("FAILED", "SCHEDULE", result.run_id)
    assert row.error.startswith(f"not started: Dagster run {result.run_id} failed")
    assert "MOODLE_URL" in row.error and "tok-abcdef-999" not in row.error
    assert history.running() == []
