"""The three sync targets as Dagster software-defined assets.

    course_catalog ─┐
                    ├─▶ enrollments
    user_directory ─┘

Each materialization: claim the target (one RUNNING history row; a second concurrent
attempt is recorded SKIPPED), sync it in one transaction, close the row SUCCESS/FAILED, and
report counts and request metrics as Dagster metadata (plotted over time in the UI) plus
asset checks for rejected rows and unmatched enrollments.

While it syncs, the worker holds its row's liveness lock (so a crash is noticed at once), beats
its heartbeat, stops between pages when the beat finds its row closed or taken over, and
commits only through the history's fence (so a worker that lost its row writes nothing).
"""

import os
import socket
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

from ..core.counts import RunCounts, breakdown
from ..core.redaction import error_text
from ..core.targets import (
    ASSET_GROUP,
    TAG_FORCE,
    TAG_TARGET,
    TAG_TRIGGER,
    TARGET_SPECS,
    SyncStatus,
    SyncTarget,
    SyncTrigger,
)
from ..history import LostOwnership, Ownership, SyncHistory
from ..sync.engine import SYNC_FUNCTIONS, SyncControl, SyncOutcome, SyncStopped, prepare_access
from ..sync.fetch import MoodleFetcher
from .change_metadata import change_metadata
from .launch import claimed_run_ids
from .prerequisites import downstream, refusal, run_targets, upstream_failed_reason
from .resources import SyncOptionsResource
from .run_state import dead_run_reporter, run_state_checker

CHECK_NO_REJECTED = "no_rejected_rows"
CHECK_NO_UNMATCHED = "no_unmatched_enrollments"
CHECK_SEES_EVERYTHING = "token_sees_everything"


class _Heartbeat:
    """Tells the history the worker is alive, from a thread, until stopped. `lost` turns true
    when the row is no longer this worker's (closed as a ghost, or taken over): the sync then
    stops at its next page (`stop_reason`)."""

    def __init__(self, history: SyncHistory, owner: Ownership):
        self.history, self.owner = history, owner
        self.interval = history.heartbeat_interval
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{owner.run_id}", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if not self.history.heartbeat(self.owner):
                    self.lost.set()
                    return
            except Exception:  # a missed beat (database hiccup) is retried on the next interval
                pass

    def stop_reason(self) -> str | None:
        if self.lost.is_set():
            return (
                f"lost ownership: sync run #{self.owner.run_id} was closed or taken over while this worker ran "
                "(its heartbeat found it); stopped before writing anything"
            )
        return None

    def __enter__(self) -> "_Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(5)


def _worker() -> str:
    return f"its worker (pid {os.getpid()} on host {socket.gethostname()})"


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
        "throttle_wait_seconds": round(
            after.get("throttle_wait_seconds", 0.0) - before.get("throttle_wait_seconds", 0.0), 3
        ),
        "requests_by_function": by_function,
    }


def _take_or_claim(context: AssetExecutionContext, target: SyncTarget, history: SyncHistory) -> Ownership | None:
    """The row this run syncs `target` under: the one a front door claimed for it (taken over),
    else a fresh claim (schedule sensor, launchpad, GraphQL). None: not synced (SKIPPED row)."""
    tags = dict(context.run.tags)
    trigger = SyncTrigger.from_tag(tags.get(TAG_TRIGGER))
    claims = claimed_run_ids(tags)
    claimed = claims.get(target.value)
    if claimed is not None:
        # This process answers for every row claimed for its run from now on, so if it dies
        # before it reaches the other targets their rows are closed at once too.
        history.hold(claims.values())
        owner = history.take(claimed, context.run_id)
        if owner is None:
            row = history.get(claimed)
            status = row.status if row else "missing"
            context.log.warning(f"{target.value} not synced: its claimed sync run #{claimed} is {status}")
        return owner
    claim = history.claim(
        target,
        trigger,
        force=tags.get(TAG_FORCE, "").lower() == "true",
        dagster_run_id=context.run_id,
        run_state=run_state_checker(context.instance),
        on_worker_gone=dead_run_reporter(context.instance),
    )
    if not claim.started:
        context.log.warning(f"{target.value} not synced: {claim.reason}")
        return None
    return history.take(claim.run_id, context.run_id)


def _close_downstream(context: AssetExecutionContext, target: SyncTarget, history: SyncHistory) -> None:
    """`target` failed: the targets of this run that depend on it will not run; say so at once."""
    tags = dict(context.run.tags)
    selection = context.run.asset_selection  # empty (or None) when the run executes its whole job
    in_run = run_targets(
        context.run.job_name,
        [key.to_user_string() for key in selection] if selection else None,
        claimed_run_ids(tags),
    )
    after = downstream(target, in_run)
    if not after:
        return
    try:
        closed = history.close_not_run(
            context.run_id, after, SyncTrigger.from_tag(tags.get(TAG_TRIGGER)), upstream_failed_reason(target)
        )
    except Exception as exc:  # the run-status sensor closes them later; never hide the real failure
        context.log.warning(f"could not record {[t.value for t in after]} as not run: {error_text(exc)}")
        return
    if closed:
        context.log.info(f"{', '.join(t.value for t in after)}: {upstream_failed_reason(target)}")


def _refuse(context: AssetExecutionContext, target: SyncTarget, history: SyncHistory, owner: Ownership) -> None:
    """Close the row FAILED and fail the step when an upstream target has never synced."""
    reason = refusal(history, target)
    if reason is None:
        return
    history.finish(owner, SyncStatus.FAILED, error=reason)
    _close_downstream(context, target, history)
    raise Failure(description=f"{target.value} refused: {reason}", metadata={"sync_run_id": owner.run_id})


def run_target(
    context: AssetExecutionContext,
    target: SyncTarget,
    moodle: MoodleResource,
    app_db: AppDatabaseResource,
    sync_options: SyncOptionsResource,
) -> Iterator[Any]:
    history = app_db.history()
    owner = _take_or_claim(context, target, history)
    if owner is None:
        return  # no materialization: nothing was synced (the history row says why)
    _refuse(context, target, history, owner)
    trigger = SyncTrigger.from_tag(context.run.tags.get(TAG_TRIGGER))
    options = sync_options.options()
    client = moodle.get_client()
    fetcher = MoodleFetcher(
        client,
        enrolment_page_size=options.enrolment_page_size,
        user_id_page_size=options.user_id_page_size,
        user_batch_size=options.user_batch_size,
    )
    before = client.snapshot()
    started = time.monotonic()
    engine = app_db.engine()
    try:
        with _Heartbeat(history, owner) as beat:
            control = SyncControl(
                stop_reason=beat.stop_reason,
                begin_apply=lambda session: history.fence(owner, session, final=False),
                fence=lambda session: history.fence(owner, session, final=True),
                run_id=owner.run_id,
            )
            # Who the token is and what it can see, before anything else: recorded on the run
            # row even when the sync then fails.
            access = prepare_access(fetcher, engine, target)
            history.note_token(
                owner,
                user_id=access.identity.user_id,
                username=access.identity.username,
                is_site_admin=access.identity.is_site_admin,
            )
            context.log.info(f"{target.value}: the token is {access.identity.describe()}")
            outcome: SyncOutcome = SYNC_FUNCTIONS[target](fetcher, engine, options, control, access)
    except Exception as exc:
        metrics = _metric_delta(before, client.snapshot())
        counts = RunCounts(
            requests=metrics["requests"],
            retries=metrics["retries"],
            responses_429=metrics["responses_429"],
            backoff_seconds=metrics["backoff_seconds"],
        )
        message = error_text(exc)
        if not history.finish(owner, SyncStatus.FAILED, counts=counts, error=message):
            # Closed under us (e.g. as "worker lost" while this process was stopped): say on the
            # row that its worker was alive after all, and that it wrote nothing.
            lost = isinstance(exc, LostOwnership | SyncStopped) or beat.lost.is_set()
            history.note_after_close(owner, f"{_worker()} was still alive; it ended with: {message}")
            if lost:
                message = f"{message} (nothing was written: the write transaction was fenced off)"
        _close_downstream(context, target, history)
        raise Failure(
            description=f"{target.value} sync failed; the previous data is unchanged. {message}",
            metadata={"sync_run_id": owner.run_id, "requests": metrics["requests"], "retries": metrics["retries"]},
        ) from None
    metrics = _metric_delta(before, client.snapshot())
    counts = outcome.counts
    counts.requests, counts.retries = metrics["requests"], metrics["retries"]
    counts.responses_429, counts.backoff_seconds = metrics["responses_429"], metrics["backoff_seconds"]
    warning = "\n".join(outcome.warnings) or None
    if not history.finish(owner, SyncStatus.SUCCESS, counts=counts, warning=warning):
        history.note_after_close(owner, f"{_worker()} was still alive and committed its changes before it noticed")
        _close_downstream(context, target, history)
        raise Failure(description=f"{target.value}: lost ownership of sync run #{owner.run_id} before it finished")
    duration = time.monotonic() - started
    for rejected_id, reason in outcome.rejected[:10]:
        context.log.warning(f"rejected Moodle row {rejected_id}: {reason}")
    for text in outcome.warnings:
        context.log.warning(text)

    metadata: dict[str, Any] = {
        "sync_run_id": owner.run_id,
        "trigger": trigger.value,
        "rows_fetched": counts.fetched,
        "rows_inserted": counts.inserted,
        "rows_updated": counts.updated,
        "rows_unchanged": counts.unchanged,
        "rows_deactivated": counts.deactivated,
        "rows_rejected": counts.rejected,
        "rows_skipped": counts.skipped,
        "rows_unmatched": counts.unmatched,
        "rows": breakdown(
            counts.fetched, counts.inserted, counts.updated, counts.unchanged, counts.rejected, counts.skipped
        ),
        "requests": metrics["requests"],
        "retries": metrics["retries"],
        "responses_429": metrics["responses_429"],
        "backoff_seconds": metrics["backoff_seconds"],
        "throttle_wait_seconds": metrics["throttle_wait_seconds"],
        "duration_seconds": round(duration, 3),
        "requests_by_function": MetadataValue.json(metrics["requests_by_function"]),
        "details": MetadataValue.json(outcome.details),
        **change_metadata(outcome.changes),
    }
    if outcome.access is not None:
        identity = outcome.access.identity
        metadata["token_user"] = identity.describe()
        metadata["moodle_release"] = identity.release
    if outcome.warnings:
        metadata["warnings"] = MetadataValue.json(outcome.warnings)
    if outcome.rejected:
        metadata["rejected_sample"] = MetadataValue.json(
            [{"moodle_id": i, "reason": r} for i, r in outcome.rejected[:20]]
        )
    asset_key = AssetKey(TARGET_SPECS[target].asset_name)
    yield MaterializeResult(asset_key=asset_key, metadata=metadata)
    yield AssetCheckResult(
        asset_key=asset_key,
        check_name=CHECK_NO_REJECTED,
        passed=counts.rejected == 0,
        severity=AssetCheckSeverity.WARN,
        metadata={"rows_rejected": counts.rejected},
        description=None
        if counts.rejected == 0
        else f"{counts.rejected} Moodle rows were rejected; see rejected_sample",
    )
    yield AssetCheckResult(
        asset_key=asset_key,
        check_name=CHECK_SEES_EVERYTHING,
        passed=not outcome.warnings,
        severity=AssetCheckSeverity.WARN,
        metadata={"warnings": len(outcome.warnings)},
        description=None if not outcome.warnings else " ".join(outcome.warnings)[:1000],
    )
    if target is SyncTarget.ENROLLMENTS:
        yield AssetCheckResult(
            asset_key=asset_key,
            check_name=CHECK_NO_UNMATCHED,
            passed=counts.unmatched == 0,
            severity=AssetCheckSeverity.WARN,
            metadata={"rows_unmatched": counts.unmatched},
            description=None
            if counts.unmatched == 0
            else f"{counts.unmatched} enrollments name users not in the user directory yet",
        )


def _checks(target: SyncTarget) -> list[AssetCheckSpec]:
    asset_name = TARGET_SPECS[target].asset_name
    specs = [
        AssetCheckSpec(CHECK_NO_REJECTED, asset=asset_name, description="every Moodle row mapped"),
        AssetCheckSpec(
            CHECK_SEES_EVERYTHING,
            asset=asset_name,
            description="the token saw every row and field (nothing kept only because it could not see it)",
        ),
    ]
    if target is SyncTarget.ENROLLMENTS:
        specs.append(
            AssetCheckSpec(
                CHECK_NO_UNMATCHED, asset=asset_name, description="every enrolled user is in the user directory"
            )
        )
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
                tags={TAG_TARGET: target.value},
                deps=[TARGET_SPECS[u].asset_name for u in spec.upstream],
                skippable=True,
            )
        ],
        check_specs=_checks(target),
        can_subset=True,
    )


@_target_asset(SyncTarget.COURSE_CATALOG)
def course_catalog(
    context: AssetExecutionContext,
    moodle: MoodleResource,
    app_db: AppDatabaseResource,
    sync_options: SyncOptionsResource,
):
    yield from run_target(context, SyncTarget.COURSE_CATALOG, moodle, app_db, sync_options)


@_target_asset(SyncTarget.USER_DIRECTORY)
def user_directory(
    context: AssetExecutionContext,
    moodle: MoodleResource,
    app_db: AppDatabaseResource,
    sync_options: SyncOptionsResource,
):
    yield from run_target(context, SyncTarget.USER_DIRECTORY, moodle, app_db, sync_options)


@_target_asset(SyncTarget.ENROLLMENTS)
def enrollments(
    context: AssetExecutionContext,
    moodle: MoodleResource,
    app_db: AppDatabaseResource,
    sync_options: SyncOptionsResource,
):
    yield from run_target(context, SyncTarget.ENROLLMENTS, moodle, app_db, sync_options)


ASSETS = [course_catalog, user_directory, enrollments]
