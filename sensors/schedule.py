"""The schedule sensor: the config table decides, this launches.

Each tick (every `MOODLE_SCHEDULE_SENSOR_INTERVAL_SECONDS`, default 30 s):

1. Close ghost RUNNING history rows (their worker's liveness lock is free, their Dagster run
   is over, or no heartbeat within `MOODLE_SYNC_HEARTBEAT_TIMEOUT_SECONDS`) so a crashed
   worker never blocks a target; the Dagster run of a worker found dead is marked failed.
2. Read `integration_sync_config` and the RUNNING rows, and let `schedules.plan.plan_tick`
   decide per target (disabled / not due / skip / wait for upstream / launch).
3. SKIP: write one SKIPPED row and move `next_run_at` to the next slot, in one
   compare-and-set transaction, so a sync longer than its frequency gives one skip row per
   missed slot, never one per tick.
4. LAUNCH: request a run of the target's own job, tagged `moodle/target=<TARGET>` and
   `moodle/trigger=SCHEDULE`, with run key `<TARGET>:<slot>`. The asset claims the target when
   the run starts, which moves `last_run_at`/`next_run_at` on (phase kept, no catch-up storm).
   Until then the slot stays due, and the run key keeps later ticks from launching it again.
   If that run ended without syncing the target (failed before the asset ran, canceled while
   queued) the slot is moved on, so the target is not stuck on a slot whose run key is used.

One sensor per target (`moodle_schedule_course_catalog`, `moodle_schedule_user_directory`,
`moodle_schedule_enrollments`), each launching only its own job: a Dagster sensor must hold
the job definitions it launches, and the code location builds its jobs itself, so each
sensor names its one job by name (the public `job_name=` form). Every sensor reads the whole
config table, so the cross-target rules below still see all targets. The Dagster UI shows
each target's ticks on its own.

Targets due together get one run each, not one `sync_all` run:
- the instance's QueuedRunCoordinator limits in-flight runs per `moodle/target` tag value;
  single-target runs are exactly what that limit serializes (a `sync_all` run carries a
  combined value that would not queue behind a single-target run of the same target);
- a failure in one target neither blocks nor fails the others (in a `sync_all` run a failed
  catalog sync would also stop enrollments);
- one run key per (target, slot) makes re-evaluation idempotent and stuck slots detectable;
- targets have their own frequencies, so being due together is the exception (first enable,
  after downtime).
Dependency order is still kept: ENROLLMENTS waits (no row, slot kept) while COURSE_CATALOG or
USER_DIRECTORY is due or syncing, and launches on the first tick after they finish.
"""

from __future__ import annotations

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)

from moodle_assets.core.clock import utcnow
from moodle_assets.core.targets import (
    DAGSTER_RUN_KEY_TAG,
    SCHEDULE_SLOT_TAG,
    TAG_TARGET,
    TAG_TRIGGER,
    TARGET_SPECS,
    SyncTarget,
    SyncTrigger,
)
from moodle_assets.history import RunRow, SyncHistory
from moodle_assets.orchestration.run_state import dead_run_reporter, run_state_checker
from resources.app_db import AppDatabaseResource
from schedules.config_table import list_configs
from schedules.due import next_slot
from schedules.plan import Action, fmt_time, plan_tick, run_key, slot_label

SCHEDULE_SENSOR_PREFIX = "moodle_schedule_"
_ENDED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


def _holder_text(row: RunRow) -> str:
    text = f"sync run #{row.id}, started {fmt_time(row.started_at)}"
    text += f", Dagster run {row.dagster_run_id}" if row.dagster_run_id else ""
    return text + (f", pid {row.worker_pid} on host {row.worker_host}" if row.worker_pid is not None else "")


def evaluate_schedule(context: SensorEvaluationContext, target: SyncTarget, history: SyncHistory):
    """One tick for `target`: a list with its RunRequest, or a SkipReason saying what was checked."""
    instance = context.instance
    now = utcnow()
    notes: list[str] = []

    ghosts = history.reconcile_ghosts(
        target=target, run_state=run_state_checker(instance), on_worker_gone=dead_run_reporter(instance), now=now
    )
    if ghosts:
        notes.append("closed ghost sync run(s) " + ", ".join(f"#{g}" for g in ghosts) + " (worker lost)")

    configs = list_configs(history.engine)
    busy: dict[SyncTarget, str] = {}
    running: list[RunRow] = history.running()
    for row in sorted(running, key=lambda r: r.started_at):
        busy.setdefault(SyncTarget(row.target), _holder_text(row))

    requests: list[RunRequest] = []
    by_target = {c.target: c for c in configs}
    for decision in plan_tick(configs, busy, now):
        if decision.target is not target:
            continue
        config = by_target[decision.target]
        if decision.action is Action.SKIP:
            assert decision.next_slot is not None
            skip_id = history.skip_slot(
                decision.target,
                expected_next_run_at=decision.slot,
                new_next_run_at=decision.next_slot,
                reason=decision.reason,
                now=now,
            )
            notes.append(decision.reason + (f" (sync run #{skip_id})" if skip_id else " (already recorded)"))
        elif decision.action is Action.LAUNCH:
            key = run_key(config)
            previous = instance.get_runs(
                filters=RunsFilter(tags={DAGSTER_RUN_KEY_TAG: key, TAG_TRIGGER: SyncTrigger.SCHEDULE.value}), limit=1
            )
            job_name = TARGET_SPECS[decision.target].job_name
            if not previous:
                requests.append(
                    RunRequest(
                        run_key=key,
                        job_name=job_name,
                        tags={
                            TAG_TARGET: decision.target.value,
                            TAG_TRIGGER: SyncTrigger.SCHEDULE.value,
                            SCHEDULE_SLOT_TAG: slot_label(config),
                        },
                    )
                )
                notes.append(f"{decision.reason}: launching {job_name}")
            elif previous[0].status in _ENDED:
                following = next_slot(
                    scheduled_at=config.next_run_at, started_at=now, frequency_minutes=config.frequency_minutes
                )
                history.skip_slot(
                    decision.target, expected_next_run_at=config.next_run_at, new_next_run_at=following, now=now
                )
                notes.append(
                    f"{decision.target.value}: the scheduled run {previous[0].run_id} for "
                    f"{fmt_time(config.next_run_at or now)} ended {previous[0].status.value} without syncing it; "
                    f"next run at {fmt_time(following)}"
                )
            else:
                notes.append(
                    f"{decision.target.value}: scheduled run {previous[0].run_id} is {previous[0].status.value}, "
                    "waiting for it to start"
                )
        else:
            notes.append(decision.reason)

    if target not in by_target:
        notes.append(f"{target.value}: no config row (run `moodle-integration db upgrade`)")
    summary = f"checked {target.value} at {fmt_time(now)}: " + "; ".join(notes)
    if requests:
        context.log.info(summary)
        return requests
    return SkipReason("nothing to launch: " + summary)


def schedule_sensor_name(target: SyncTarget) -> str:
    return f"{SCHEDULE_SENSOR_PREFIX}{TARGET_SPECS[target].asset_name}"


def build_schedule_sensor(target: SyncTarget, tick_seconds: int) -> SensorDefinition:
    spec = TARGET_SPECS[target]

    @sensor(
        name=schedule_sensor_name(target),
        job_name=spec.job_name,
        minimum_interval_seconds=tick_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description=f"Launches {spec.job_name} when integration_sync_config says {target.value} is due; "
        "records SKIPPED when its previous sync is still running; closes its ghost RUNNING rows.",
    )
    def _schedule_sensor(context: SensorEvaluationContext, app_db: AppDatabaseResource):
        return evaluate_schedule(context, target, app_db.history(migrate=True))

    return _schedule_sensor


def build_schedule_sensors(tick_seconds: int) -> dict[SyncTarget, SensorDefinition]:
    return {target: build_schedule_sensor(target, tick_seconds) for target in SyncTarget}
