"""Close the sync history of Dagster runs that failed or were canceled.

An asset closes its own row when the sync itself fails. These sensors cover the rest:
- a RUNNING row of the run (the failure happened outside the sync: resources, the run
  worker, a cancel) is closed FAILED with a readable, redacted error;
- a target the run was meant to sync but never started (failed or canceled before its step
  ran, e.g. while queued, or an upstream target failed in the same run) gets a row too:
  FAILED when the run failed, SKIPPED when it was canceled, so the history has no gaps.

A run worker killed outright sends no event at all: its row is closed by ghost
reconciliation on the next schedule tick (heartbeat timeout, or run monitoring marking the
run failed, which also triggers the failure sensor).
"""

from __future__ import annotations

from dagster import (
    AssetKey,
    DagsterRun,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunStatusSensorContext,
    SensorDefinition,
    run_failure_sensor,
    run_status_sensor,
)

from moodle_assets.core.targets import (
    ALL_JOB_NAMES,
    SYNC_ALL_JOB_NAME,
    TAG_TARGET,
    TAG_TRIGGER,
    TARGET_ORDER,
    TARGET_SPECS,
    SyncTarget,
    SyncTrigger,
    target_for_job,
)
from moodle_assets.history import SyncHistory
from resources.app_db import AppDatabaseResource


def run_targets(run: DagsterRun) -> list[SyncTarget]:
    """The targets a Dagster run of our code location was meant to sync ([] if not ours)."""
    is_asset_job = run.job_name.startswith("__ASSET_JOB")
    if run.job_name not in ALL_JOB_NAMES and not is_asset_job:
        return []
    if run.asset_selection:  # empty: not restricted (execute_in_process sets frozenset())
        keys = set(run.asset_selection)
        return [t for t in TARGET_ORDER if AssetKey(TARGET_SPECS[t].asset_name) in keys]
    found: list[SyncTarget] = []
    for part in (run.tags.get(TAG_TARGET) or "").split(","):
        try:
            target = SyncTarget.parse(part) if part.strip() else None
        except ValueError:
            target = None
        if target is not None and target not in found:
            found.append(target)
    if found:
        return [t for t in TARGET_ORDER if t in found]
    single = target_for_job(run.job_name)
    if single is not None:
        return [single]
    return list(TARGET_ORDER) if run.job_name == SYNC_ALL_JOB_NAME else []


def close_ended_run(history: SyncHistory, run: DagsterRun, *, canceled: bool, message: str) -> dict[str, list[int]]:
    """Close what a failed/canceled Dagster run left open; returns the row ids touched."""
    targets = run_targets(run)
    if not targets:
        return {"closed": [], "recorded": []}
    closed = history.close_dagster_run(run.run_id, error=message)
    recorded = history.record_not_started(
        run.run_id, targets, SyncTrigger.from_tag(run.tags.get(TAG_TRIGGER)), canceled=canceled, message=message
    )
    return {"closed": closed, "recorded": recorded}


def _first_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def _root_message(error) -> str:
    """The first line of the innermost cause: the user's error, not Dagster's wrapper."""
    while error is not None and getattr(error, "cause", None) is not None:
        error = error.cause
    return _first_line(error.message) if error is not None else ""


def failure_message(context: RunFailureSensorContext) -> str:
    run_id = context.dagster_run.run_id
    parts = []
    for event in context.get_step_failure_events():
        detail = _root_message(getattr(event.event_specific_data, "error", None)) or _first_line(event.message)
        parts.append(f"step {event.step_key}: {detail}")
    if not parts:  # failed outside a step: resources, the run worker, run monitoring
        data = context.failure_event.event_specific_data
        parts.append(
            _root_message(getattr(data, "error", None)) or _first_line(context.failure_event.message) or "run failed"
        )
    return f"Dagster run {run_id} failed: " + "; ".join(parts)


def build_run_status_sensors(tick_seconds: int) -> list[SensorDefinition]:
    @run_failure_sensor(
        name="moodle_run_failure_sensor",
        minimum_interval_seconds=tick_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description="Closes the sync history rows of a failed Dagster run of a sync job.",
    )
    def moodle_run_failure_sensor(context: RunFailureSensorContext, app_db: AppDatabaseResource):
        run = context.dagster_run
        touched = close_ended_run(app_db.history(migrate=True), run, canceled=False, message=failure_message(context))
        if touched["closed"] or touched["recorded"]:
            context.log.info(f"run {run.run_id}: closed {touched['closed']}, recorded {touched['recorded']}")

    @run_status_sensor(
        run_status=DagsterRunStatus.CANCELED,
        name="moodle_run_canceled_sensor",
        minimum_interval_seconds=tick_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description="Closes the sync history rows of a canceled Dagster run of a sync job.",
    )
    def moodle_run_canceled_sensor(context: RunStatusSensorContext, app_db: AppDatabaseResource):
        run = context.dagster_run
        touched = close_ended_run(
            app_db.history(migrate=True), run, canceled=True, message=f"Dagster run {run.run_id} was canceled"
        )
        if touched["closed"] or touched["recorded"]:
            context.log.info(f"run {run.run_id}: closed {touched['closed']}, recorded {touched['recorded']}")

    return [moodle_run_failure_sensor, moodle_run_canceled_sensor]
