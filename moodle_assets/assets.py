"""The three sync targets as Dagster software-defined assets.

    course_catalog ─┐
                    ├─▶ enrollments
    user_directory ─┘

Each materialization: claim the target (one RUNNING history row; a second concurrent
attempt is recorded SKIPPED), sync it in one transaction, close the row SUCCESS/FAILED, and
report counts and request metrics as Dagster metadata (plotted over time in the UI) plus
asset checks for rejected rows and unmatched enrollments.
"""

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    Failure,
    MaterializeResult,
    MetadataValue,
    multi_asset,
)

from resources.app_db import AppDatabaseResource
from resources.moodle import MoodleResource

from .dagster_runs import run_state_checker
from .redaction import error_text
from .settings import load_settings
from .store import sync_runs
from .sync.engine import SYNC_FUNCTIONS, SyncOutcome
from .sync.fetch import MoodleFetcher
from .sync.options import SyncOptions
from .targets import ASSET_GROUP, TAG_FORCE, TAG_SYNC_RUN_IDS, TAG_TRIGGER, TARGET_SPECS, SyncTarget, SyncTrigger

CHECK_NO_REJECTED = "no_rejected_rows"
CHECK_NO_UNMATCHED = "no_unmatched_enrollments"


def claimed_run_ids(tags: dict[str, str]) -> dict[str, int]:
    raw = tags.get(TAG_SYNC_RUN_IDS)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
        return {str(k): int(v) for k, v in value.items()}
    except (ValueError, TypeError, AttributeError):
        return {}


def trigger_from_tags(tags: dict[str, str]) -> str:
    value = (tags.get(TAG_TRIGGER) or "").upper()
    return value if value in SyncTrigger.__members__ else SyncTrigger.MANUAL.value


class _Heartbeat:
    """Tells the history the worker is alive, from a thread, until stopped."""

    def __init__(self, engine, run_id: int, interval: float | None = None):
        self.engine, self.run_id = engine, run_id
        self.interval = interval if interval is not None else sync_runs.heartbeat_interval_seconds()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{run_id}", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                sync_runs.heartbeat(self.engine, self.run_id)
            except Exception:  # a missed beat is retried on the next interval
                pass

    def __enter__(self) -> "_Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(5)


def _metric_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    by_before = before.get("requests_by_function", {})
    by_function = {
        name: count - by_before.get(name, 0)
        for name, count in after.get("requests_by_function", {}).items()
        if count - by_before.get(name, 0)
    }
    return {
        "requests": after.get("requests_total", 0) - before.get("requests_total", 0),
        "retries": after.get("retries", 0) - before.get("retries", 0),
        "responses_429": after.get("responses_429", 0) - before.get("responses_429", 0),
        "backoff_seconds": round(after.get("backoff_seconds", 0.0) - before.get("backoff_seconds", 0.0), 3),
        "throttle_wait_seconds": round(after.get("throttle_wait_seconds", 0.0) - before.get("throttle_wait_seconds", 0.0), 3),
        "requests_by_function": by_function,
    }


def run_target(
    context: AssetExecutionContext, target: SyncTarget, moodle: MoodleResource, app_db: AppDatabaseResource
) -> Iterator[Any]:
    engine = app_db.engine()
    tags = dict(context.run.tags)
    trigger = trigger_from_tags(tags)
    force = tags.get(TAG_FORCE, "").lower() == "true"
    run_state = run_state_checker(context.instance)

    run_id = claimed_run_ids(tags).get(target.value)
    row = sync_runs.get_run(engine, run_id) if run_id is not None else None
    if row is not None and row.status == "RUNNING":
        sync_runs.attach_dagster_run(engine, row.id, context.run_id)
        sync_runs.heartbeat(engine, row.id)
    else:
        claim = sync_runs.claim_run(
            engine, target.value, trigger, force=force, dagster_run_id=context.run_id, run_state=run_state
        )
        if not claim.started:
            context.log.warning(f"{target.value} not synced: {claim.reason}")
            return  # no materialization: nothing was synced (the SKIPPED row says why)
        run_id = claim.run_id

    settings = load_settings()
    options = SyncOptions.from_settings(settings)
    client = moodle.get_client()
    fetcher = MoodleFetcher(
        client,
        enrolment_page_size=options.enrolment_page_size,
        user_id_page_size=options.user_id_page_size,
        user_batch_size=options.user_batch_size,
    )
    before = client.snapshot()
    started = time.monotonic()
    try:
        with _Heartbeat(engine, run_id):
            outcome: SyncOutcome = SYNC_FUNCTIONS[target.value](fetcher, engine, options)
    except Exception as exc:
        metrics = _metric_delta(before, client.snapshot())
        counts = sync_runs.RunCounts(
            requests=metrics["requests"], retries=metrics["retries"],
            responses_429=metrics["responses_429"], backoff_seconds=metrics["backoff_seconds"],
        )
        message = error_text(exc)
        sync_runs.finish_run(engine, run_id, status="FAILED", counts=counts, error=message)
        raise Failure(
            description=f"{target.value} sync failed; the previous data is unchanged. {message}",
            metadata={"sync_run_id": run_id, "requests": metrics["requests"], "retries": metrics["retries"]},
        ) from None
    metrics = _metric_delta(before, client.snapshot())
    counts = outcome.counts
    counts.requests, counts.retries = metrics["requests"], metrics["retries"]
    counts.responses_429, counts.backoff_seconds = metrics["responses_429"], metrics["backoff_seconds"]
    sync_runs.finish_run(engine, run_id, status="SUCCESS", counts=counts)
    duration = time.monotonic() - started
    for rejected_id, reason in outcome.rejected[:10]:
        context.log.warning(f"rejected Moodle row {rejected_id}: {reason}")

    metadata: dict[str, Any] = {
        "sync_run_id": run_id,
        "trigger": trigger,
        "rows_fetched": counts.fetched,
        "rows_inserted": counts.inserted,
        "rows_updated": counts.updated,
        "rows_unchanged": counts.unchanged,
        "rows_deactivated": counts.deactivated,
        "rows_rejected": counts.rejected,
        "rows_unmatched": counts.unmatched,
        "rows_skipped": outcome.skipped,
        "requests": metrics["requests"],
        "retries": metrics["retries"],
        "responses_429": metrics["responses_429"],
        "backoff_seconds": metrics["backoff_seconds"],
        "throttle_wait_seconds": metrics["throttle_wait_seconds"],
        "duration_seconds": round(duration, 3),
        "requests_by_function": MetadataValue.json(metrics["requests_by_function"]),
        "details": MetadataValue.json(outcome.details),
    }
    if outcome.rejected:
        metadata["rejected_sample"] = MetadataValue.json([{"moodle_id": i, "reason": r} for i, r in outcome.rejected[:20]])
    asset_key = AssetKey(TARGET_SPECS[target].asset_name)
    yield MaterializeResult(asset_key=asset_key, metadata=metadata)
    yield AssetCheckResult(
        asset_key=asset_key,
        check_name=CHECK_NO_REJECTED,
        passed=counts.rejected == 0,
        severity=AssetCheckSeverity.WARN,
        metadata={"rows_rejected": counts.rejected},
        description=None if counts.rejected == 0 else f"{counts.rejected} Moodle rows were rejected; see rejected_sample",
    )
    if target is SyncTarget.ENROLLMENTS:
        yield AssetCheckResult(
            asset_key=asset_key,
            check_name=CHECK_NO_UNMATCHED,
            passed=counts.unmatched == 0,
            severity=AssetCheckSeverity.WARN,
            metadata={"rows_unmatched": counts.unmatched},
            description=None if counts.unmatched == 0 else f"{counts.unmatched} enrollments name users not in the user directory yet",
        )


def _checks(target: SyncTarget) -> list[AssetCheckSpec]:
    asset_name = TARGET_SPECS[target].asset_name
    specs = [AssetCheckSpec(CHECK_NO_REJECTED, asset=asset_name, description="every Moodle row mapped")]
    if target is SyncTarget.ENROLLMENTS:
        specs.append(AssetCheckSpec(CHECK_NO_UNMATCHED, asset=asset_name, description="every enrolled user is in the user directory"))
    return specs


def _target_asset(target: SyncTarget):
    """A one-asset `multi_asset` so a skipped sync may yield neither a materialization nor
    check results (`can_subset=True` makes both optional)."""
    spec = TARGET_SPECS[target]
    return multi_asset(
        name=spec.asset_name,
        specs=[
            AssetSpec(
                spec.asset_name,
                group_name=ASSET_GROUP,
                description=spec.description,
                kinds={"moodle", "sql"},
                tags={"moodle/target": target.value},
                deps=[TARGET_SPECS[u].asset_name for u in spec.upstream],
                skippable=True,
            )
        ],
        check_specs=_checks(target),
        can_subset=True,
    )


@_target_asset(SyncTarget.COURSE_CATALOG)
def course_catalog(context: AssetExecutionContext, moodle: MoodleResource, app_db: AppDatabaseResource):
    yield from run_target(context, SyncTarget.COURSE_CATALOG, moodle, app_db)


@_target_asset(SyncTarget.USER_DIRECTORY)
def user_directory(context: AssetExecutionContext, moodle: MoodleResource, app_db: AppDatabaseResource):
    yield from run_target(context, SyncTarget.USER_DIRECTORY, moodle, app_db)


@_target_asset(SyncTarget.ENROLLMENTS)
def enrollments(context: AssetExecutionContext, moodle: MoodleResource, app_db: AppDatabaseResource):
    yield from run_target(context, SyncTarget.ENROLLMENTS, moodle, app_db)


ASSETS = [course_catalog, user_directory, enrollments]
