"""The sync history (`integration_sync_run`) and its rules: no overlap, no ghosts.

- `claim_run` starts a sync: it first closes ghost RUNNING rows (worker gone), then inserts
  a RUNNING row. A partial unique index allows one non-forced RUNNING row per target, so of
  two concurrent claims exactly one wins; the loser gets a SKIPPED row with the reason.
- `heartbeat` is called by the running sync; a RUNNING row whose heartbeat is older than the
  timeout, or whose Dagster run is known to be over, is a ghost and is closed as FAILED
  ("worker lost") by `reconcile_ghosts`.
- Starting a run moves the target's `last_run_at`/`next_run_at` on (see schedules.due).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError

from ..redaction import redact
from .db import transaction
from .models import IntegrationSyncConfig, IntegrationSyncRun
from .types import utcnow

HEARTBEAT_TIMEOUT_ENV = "MOODLE_SYNC_HEARTBEAT_TIMEOUT_SECONDS"
DEFAULT_HEARTBEAT_TIMEOUT_S = 180
HEARTBEAT_INTERVAL_S = 10

# Given a Dagster run id, where that run is: "QUEUED" (not started yet: waiting is not dying),
# "RUNNING" (started: its heartbeat must stay fresh), "OVER" (ended), or None (unknown).
RunStateCheck = Callable[[str], "str | None"]
QUEUED, RUNNING, OVER = "QUEUED", "RUNNING", "OVER"


def heartbeat_timeout() -> timedelta:
    from resources.config import env_int

    return timedelta(seconds=env_int(HEARTBEAT_TIMEOUT_ENV, DEFAULT_HEARTBEAT_TIMEOUT_S, minimum=5))


def heartbeat_interval_seconds() -> float:
    """How often a running sync beats: at least three beats per timeout, so a healthy worker is
    never judged lost when the timeout is set below the usual interval (it accepts 5 s)."""
    return min(HEARTBEAT_INTERVAL_S, heartbeat_timeout().total_seconds() / 3)


@dataclass
class RunCounts:
    fetched: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deactivated: int = 0
    rejected: int = 0
    unmatched: int = 0
    requests: int = 0
    retries: int = 0
    responses_429: int = 0
    backoff_seconds: float = 0.0

    def add(self, other: "RunCounts") -> "RunCounts":
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)
        return self


@dataclass(frozen=True)
class Claim:
    run_id: int
    target: str
    started: bool  # False: recorded as SKIPPED
    reason: str | None = None
    closed_ghosts: tuple[int, ...] = field(default=())


@dataclass(frozen=True)
class RunRow:
    id: int
    target: str
    status: str
    trigger: str
    dagster_run_id: str | None
    started_at: datetime
    finished_at: datetime | None
    heartbeat_at: datetime | None
    forced: bool
    rows_fetched: int | None
    rows_inserted: int | None
    rows_updated: int | None
    rows_unchanged: int | None
    rows_deactivated: int | None
    rows_rejected: int | None
    rows_unmatched: int | None
    requests_made: int | None
    retries: int | None
    responses_429: int | None
    backoff_seconds: float | None
    error: str | None
    skip_reason: str | None

    @property
    def duration_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


def _row(run: IntegrationSyncRun) -> RunRow:
    return RunRow(**{name: getattr(run, name) for name in RunRow.__dataclass_fields__})


def reconcile_ghosts(
    engine: Engine,
    *,
    target: str | None = None,
    run_state: RunStateCheck | None = None,
    now: datetime | None = None,
    timeout: timedelta | None = None,
) -> list[int]:
    """Close RUNNING rows whose worker is gone; return their ids."""
    now = now or utcnow()
    timeout = timeout or heartbeat_timeout()
    closed: list[int] = []
    with transaction(engine) as session:
        query = select(IntegrationSyncRun).where(IntegrationSyncRun.status == "RUNNING")
        if target is not None:
            query = query.where(IntegrationSyncRun.target == target)
        for run in session.scalars(query).all():
            last_sign = run.heartbeat_at or run.started_at
            state = run_state(run.dagster_run_id) if (run.dagster_run_id and run_state is not None) else None
            reason = None
            if state == OVER:
                reason = f"worker lost: Dagster run {run.dagster_run_id} ended without closing this sync"
            elif state == QUEUED:
                # Launched, waiting in Dagster's queue: not a ghost. Its worker has not started,
                # so nothing beats yet; count the timeout from now, not from the claim, or a run
                # that waited longer than the timeout (daemon restarted, queue full) is closed
                # as "worker lost" the moment it starts.
                run.heartbeat_at = now
                continue
            elif last_sign < now - timeout:
                reason = f"worker lost: no heartbeat since {last_sign:%Y-%m-%d %H:%M:%SZ} (timeout {int(timeout.total_seconds())} s)"
            if reason:
                run.status = "FAILED"
                run.finished_at = now
                run.error = reason
                closed.append(run.id)
    return closed


def claim_run(
    engine: Engine,
    target: str,
    trigger: str,
    *,
    force: bool = False,
    dagster_run_id: str | None = None,
    run_state: RunStateCheck | None = None,
    now: datetime | None = None,
) -> Claim:
    from schedules.due import next_slot

    now = now or utcnow()
    ghosts = tuple(reconcile_ghosts(engine, target=target, run_state=run_state, now=now))
    try:
        with transaction(engine) as session:
            run = IntegrationSyncRun(
                target=target,
                status="RUNNING",
                trigger=trigger,
                dagster_run_id=dagster_run_id,
                started_at=now,
                heartbeat_at=now,
                forced=force,
            )
            session.add(run)
            session.flush()  # the unique index decides here
            config = session.get(IntegrationSyncConfig, target)
            if config is not None:
                config.next_run_at = (
                    next_slot(scheduled_at=config.next_run_at, started_at=now, frequency_minutes=config.frequency_minutes)
                    if config.enabled
                    else None
                )
                config.last_run_at = now
            return Claim(run.id, target, True, None, ghosts)
    except IntegrityError:
        pass
    with transaction(engine) as session:
        holder = session.scalars(
            select(IntegrationSyncRun)
            .where(IntegrationSyncRun.target == target, IntegrationSyncRun.status == "RUNNING")
            .order_by(IntegrationSyncRun.started_at)
        ).first()
        if holder is not None:
            reason = f"{target} is already syncing (sync run #{holder.id}, started {holder.started_at:%Y-%m-%d %H:%M:%SZ}"
            reason += f", Dagster run {holder.dagster_run_id})" if holder.dagster_run_id else ")"
        else:
            reason = f"{target} is already syncing"
        skipped_id = add_skip_row(session, target, trigger, reason, now=now, dagster_run_id=dagster_run_id, forced=force)
        return Claim(skipped_id, target, False, reason, ghosts)


def add_skip_row(
    session,
    target: str,
    trigger: str,
    reason: str,
    *,
    now: datetime,
    dagster_run_id: str | None = None,
    forced: bool = False,
) -> int:
    """Insert a SKIPPED history row in the caller's transaction; return its id."""
    run = IntegrationSyncRun(
        target=target, status="SKIPPED", trigger=trigger, dagster_run_id=dagster_run_id,
        started_at=now, finished_at=now, forced=forced, skip_reason=reason,
    )
    session.add(run)
    session.flush()
    return run.id


def record_skip(engine: Engine, target: str, trigger: str, reason: str, *, dagster_run_id: str | None = None) -> int:
    with transaction(engine) as session:
        return add_skip_row(session, target, trigger, reason, now=utcnow(), dagster_run_id=dagster_run_id)


def attach_dagster_run(engine: Engine, run_id: int, dagster_run_id: str) -> None:
    with transaction(engine) as session:
        session.execute(update(IntegrationSyncRun).where(IntegrationSyncRun.id == run_id).values(dagster_run_id=dagster_run_id))


def heartbeat(engine: Engine, run_id: int, now: datetime | None = None) -> bool:
    """Record that the sync is alive; False if the row is no longer RUNNING (closed as a ghost)."""
    with transaction(engine) as session:
        result = session.execute(
            update(IntegrationSyncRun)
            .where(IntegrationSyncRun.id == run_id, IntegrationSyncRun.status == "RUNNING")
            .values(heartbeat_at=now or utcnow())
        )
        return result.rowcount == 1


def finish_run(
    engine: Engine,
    run_id: int,
    *,
    status: str,
    counts: RunCounts | None = None,
    error: str | None = None,
    now: datetime | None = None,
) -> None:
    assert status in ("SUCCESS", "FAILED"), status
    values: dict = {"status": status, "finished_at": now or utcnow(), "error": redact(error)}
    if counts is not None:
        values.update(
            rows_fetched=counts.fetched,
            rows_inserted=counts.inserted,
            rows_updated=counts.updated,
            rows_unchanged=counts.unchanged,
            rows_deactivated=counts.deactivated,
            rows_rejected=counts.rejected,
            rows_unmatched=counts.unmatched,
            requests_made=counts.requests,
            retries=counts.retries,
            responses_429=counts.responses_429,
            backoff_seconds=round(counts.backoff_seconds, 3),
        )
    with transaction(engine) as session:
        session.execute(update(IntegrationSyncRun).where(IntegrationSyncRun.id == run_id).values(**values))


def close_runs_of_dagster_run(engine: Engine, dagster_run_id: str, *, error: str) -> list[int]:
    """A Dagster run ended (failure, cancel, crash): close its still-RUNNING rows as FAILED."""
    now = utcnow()
    with transaction(engine) as session:
        runs = session.scalars(
            select(IntegrationSyncRun).where(
                IntegrationSyncRun.dagster_run_id == dagster_run_id, IntegrationSyncRun.status == "RUNNING"
            )
        ).all()
        for run in runs:
            run.status = "FAILED"
            run.finished_at = now
            run.error = redact(error)
        return [run.id for run in runs]


def get_run(engine: Engine, run_id: int) -> RunRow | None:
    with transaction(engine) as session:
        run = session.get(IntegrationSyncRun, run_id)
        return _row(run) if run else None


def list_runs(engine: Engine, *, target: str | None = None, limit: int = 20) -> list[RunRow]:
    with transaction(engine) as session:
        query = select(IntegrationSyncRun).order_by(IntegrationSyncRun.started_at.desc(), IntegrationSyncRun.id.desc())
        if target is not None:
            query = query.where(IntegrationSyncRun.target == target)
        return [_row(r) for r in session.scalars(query.limit(limit)).all()]


def running_runs(engine: Engine) -> list[RunRow]:
    with transaction(engine) as session:
        return [_row(r) for r in session.scalars(select(IntegrationSyncRun).where(IntegrationSyncRun.status == "RUNNING")).all()]
