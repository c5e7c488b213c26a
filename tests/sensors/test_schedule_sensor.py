"""The schedule sensors on a real app DB: run requests, skips once per slot, waits, ghosts."""
from __future__ import annotations

from datetime import timedelta

from dagster import DagsterRunStatus, RunRequest, SkipReason, build_sensor_context
from dagster._core.test_utils import create_run_for_test

from moodle_assets.core.clock import utcnow
from moodle_assets.core.targets import SyncStatus, SyncTarget, SyncTrigger
from moodle_assets.definitions import defs
from resources.app_db import AppDatabaseResource
from schedules.config_table import get_config, list_configs, update_config
from sensors import build_schedule_sensors, build_sensors, schedule_sensor_name

CC, UD, EN = SyncTarget.COURSE_CATALOG, SyncTarget.USER_DIRECTORY, SyncTarget.ENROLLMENTS


SCHEDULE_SENSORS = build_schedule_sensors(30)


def tick(instance, target, resource):
    context = build_sensor_context(instance=instance, resources={"app_db": resource})
    return SCHEDULE_SENSORS[target](context)


def finish(history, run_id):
    owner = history.take(run_id, "a-dagster-run")
    assert history.finish(owner, SyncStatus.SUCCESS)


def requests(result):
    return result if isinstance(result, list) else []


def test_code_location_has_one_running_schedule_sensor_per_target_and_the_status_sensors():
    repo = defs.get_repository_def()
    names = sorted(s.name for s in repo.sensor_defs)
    assert names == [
        "moodle_run_canceled_sensor", "moodle_run_failure_sensor",
        "moodle_schedule_course_catalog", "moodle_schedule_enrollments", "moodle_schedule_user_directory",
    ]
    for target in SyncTarget:
        sensor = repo.get_sensor_def(schedule_sensor_name(target))
        assert [t.job_name for t in sensor.targets] == [f"sync_{sensor.name.removeprefix('moodle_schedule_')}"]
    assert all(s.default_status.value == "RUNNING" for s in build_sensors(tick_seconds=30))


def test_fresh_database_is_migrated_and_nothing_enabled_launches_nothing(sqlite_url, instance):
    fresh = AppDatabaseResource(url=sqlite_url)  # no tables yet
    for target in SyncTarget:
        result = tick(instance, target, fresh)
        assert isinstance(result, SkipReason)
        assert result.skip_message.startswith(f"nothing to launch: checked {target.value} at ")
        assert f"{target.value}: disabled" in result.skip_message


def test_due_target_launches_its_job_with_tags_and_an_idempotent_run_key(app_db, instance, history, db_resource):
    update_config(app_db, CC, enabled=True, frequency_minutes=30)
    slot = get_config(app_db, CC).next_run_at
    first, second = tick(instance, CC, db_resource), tick(instance, CC, db_resource)
    assert first == second  # the same slot re-evaluated: the same request, deduplicated by its run key
    [request] = first
    assert isinstance(request, RunRequest)
    assert request.job_name == "sync_course_catalog"
    assert request.run_key == f"COURSE_CATALOG:{slot.isoformat()}"
    assert request.tags["moodle/target"] == "COURSE_CATALOG"
    assert request.tags["moodle/trigger"] == "SCHEDULE"
    # the others are disabled: never launched, whatever their next_run_at says
    assert isinstance(tick(instance, UD, db_resource), SkipReason) and isinstance(tick(instance, EN, db_resource), SkipReason)
    # once the asset claims the slot, the target is no longer due and the next slot is 30 min on
    claim = history.claim(SyncTarget.COURSE_CATALOG, SyncTrigger.SCHEDULE)
    finish(history, claim.run_id)
    assert get_config(app_db, CC).next_run_at == slot + timedelta(minutes=30)
    result = tick(instance, CC, db_resource)
    assert isinstance(result, SkipReason) and "COURSE_CATALOG: next run at" in result.skip_message


def test_busy_target_gets_one_skipped_row_per_slot_not_per_tick(app_db, instance, history, db_resource):
    update_config(app_db, UD, enabled=True, frequency_minutes=60)
    # a long sync started 70 minutes ago (and still beating): its next slot, 10 minutes ago, is due
    holder = history.claim(SyncTarget.USER_DIRECTORY, SyncTrigger.CLI, now=utcnow() - timedelta(minutes=70))
    assert history.heartbeat(history.take(holder.run_id, "long-run"))
    slot = get_config(app_db, UD).next_run_at
    results = [tick(instance, UD, db_resource) for _ in range(3)]
    assert all(isinstance(r, SkipReason) for r in results)
    assert "still syncing" in results[0].skip_message and f"sync run #{holder.run_id}" in results[0].skip_message
    skipped = [r for r in history.recent(target=SyncTarget.USER_DIRECTORY) if r.status == "SKIPPED"]
    assert len(skipped) == 1
    assert skipped[0].trigger == "SCHEDULE" and f"sync run #{holder.run_id}" in skipped[0].skip_reason
    assert get_config(app_db, UD).next_run_at == slot + timedelta(minutes=60)
    assert history.get(holder.run_id).status == "RUNNING"  # the running sync is left alone


def test_enrollments_wait_for_a_due_upstream_then_launch(app_db, instance, history, db_resource):
    update_config(app_db, UD, enabled=True, frequency_minutes=60)
    update_config(app_db, EN, enabled=True, frequency_minutes=60)
    waiting = tick(instance, EN, db_resource)
    assert isinstance(waiting, SkipReason) and "waiting for USER_DIRECTORY" in waiting.skip_message
    assert [r.job_name for r in requests(tick(instance, UD, db_resource))] == ["sync_user_directory"]
    claim = history.claim(SyncTarget.USER_DIRECTORY, SyncTrigger.SCHEDULE)  # the users run starts...
    assert isinstance(tick(instance, EN, db_resource), SkipReason)
    finish(history, claim.run_id)  # ...and ends
    assert [r.job_name for r in requests(tick(instance, EN, db_resource))] == ["sync_enrollments"]
    assert history.recent(target=SyncTarget.ENROLLMENTS) == []  # waiting records nothing


def test_slot_whose_run_ended_without_syncing_moves_on_and_a_queued_one_waits(app_db, instance, history, db_resource):
    update_config(app_db, EN, enabled=True, frequency_minutes=15)
    [request] = tick(instance, EN, db_resource)
    run = create_run_for_test(instance, job_name="sync_enrollments", tags=request.tags | {"dagster/run_key": request.run_key},
                              status=DagsterRunStatus.NOT_STARTED)
    waiting = tick(instance, EN, db_resource)
    assert isinstance(waiting, SkipReason) and f"{run.run_id} is NOT_STARTED" in waiting.skip_message
    instance.report_run_canceled(run)  # canceled while queued: the asset never claimed the slot
    slot = get_config(app_db, EN).next_run_at
    moved = tick(instance, EN, db_resource)
    assert isinstance(moved, SkipReason) and "ended CANCELED without syncing it" in moved.skip_message
    assert get_config(app_db, EN).next_run_at == slot + timedelta(minutes=15)
    assert history.recent(target=SyncTarget.ENROLLMENTS) == []


def test_ghost_running_rows_are_closed_on_the_tick(app_db, instance, history, db_resource):
    update_config(app_db, CC, enabled=True, frequency_minutes=1)
    stale = history.claim(SyncTarget.COURSE_CATALOG, SyncTrigger.SCHEDULE, now=utcnow() - timedelta(minutes=5))
    ended = create_run_for_test(instance, job_name="sync_enrollments", status=DagsterRunStatus.FAILURE)
    gone = history.claim(SyncTarget.ENROLLMENTS, SyncTrigger.API, dagster_run_id=ended.run_id)  # fresh beat, run over
    result = tick(instance, CC, db_resource)
    assert [r.job_name for r in requests(result)] == ["sync_course_catalog"]  # the ghost no longer blocks it
    row = history.get(stale.run_id)
    assert row.status == "FAILED" and row.error.startswith("worker lost: no heartbeat")
    assert history.get(gone.run_id).status == "RUNNING"  # each sensor reconciles its own target
    tick(instance, EN, db_resource)
    assert "ended without closing" in history.get(gone.run_id).error
    assert history.running() == []
    assert [c.enabled for c in list_configs(app_db)] == [True, False, False]


def test_row_of_a_run_whose_creator_died_before_starting_it_becomes_a_ghost(app_db, instance, history, db_resource):
    """NOT_STARTED is not "queued": nobody will start it, so the heartbeat timeout applies."""
    run = create_run_for_test(instance, job_name="sync_user_directory", status=DagsterRunStatus.NOT_STARTED)
    orphan = history.claim(SyncTarget.USER_DIRECTORY, SyncTrigger.CLI, dagster_run_id=run.run_id, now=utcnow() - timedelta(minutes=5))
    # a run being launched (STARTING, like QUEUED) is waiting for a worker, not dead
    queued = create_run_for_test(instance, job_name="sync_enrollments", status=DagsterRunStatus.STARTING)
    waiting = history.claim(SyncTarget.ENROLLMENTS, SyncTrigger.API, dagster_run_id=queued.run_id, now=utcnow() - timedelta(minutes=5))
    tick(instance, UD, db_resource)
    tick(instance, EN, db_resource)
    assert history.get(orphan.run_id).status == "FAILED"
    assert history.get(waiting.run_id).status == "RUNNING"
