"""The sync history (`integration_sync_run`): the only module that writes it.

Rules it keeps:

- **No overlap.** `claim` inserts a RUNNING row; a partial unique index allows one non-forced
  RUNNING row per target, so of two concurrent claims exactly one wins and the other is
  recorded SKIPPED with the holder named. Claiming moves the target's schedule on
  (`schedules.config_table.mark_started`) in the same transaction.
- **Ownership.** A front door (CLI, HTTP trigger, admin page) may claim a row before its
  Dagster run starts; the run worker then `take`s it, which stamps the row with the worker's
  token. `heartbeat` and `finish` only touch a RUNNING row whose token is the caller's: a row
  that was closed as "worker lost" can never be flipped back to SUCCESS by its old worker.
- **No ghosts.** `reconcile_ghosts` closes RUNNING rows whose worker is gone (its Dagster run
  is over, or no heartbeat within the timeout) as FAILED ("worker lost") before a claim.
- Every other way a row ends (skipped slot, launch failure, a Dagster run that failed or was
  canceled before its step ran) is a method here too, so the history has no gaps.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError

from schedules import config_table

from ..core.clock import utcnow
from ..core.counts import RunCounts
from ..core.redaction import clip, redact
from ..core.targets import SyncStatus, SyncTarget, SyncTrigger
from ..store.db import rowcount, transaction
from ..store.models import IntegrationSyncRun

DEFAULT_HEARTBEAT_TIMEOUT_S = 180
HEARTBEAT_INTERVAL_S = 10.0


class RunState:
    """Where a Dagster run is, as far as a RUNNING row is concerned."""

    QUEUED = "QUEUED"  # not started yet: waiting is not dying
    RUNNING = "RUNNING"  # started: its heartbeat must stay fresh
    OVER = "OVER"  # ended


# Given a Dagster run id: RunState.QUEUED / RUNNING / OVER, or None when unknown.
RunStateCheck = Callable[[str], "str | None"]


@dataclass(frozen=True)
class Claim:
    run_id: int
    target: SyncTarget
    started: bool  # False: recorded as SKIPPED
    reason: str | None = None
    closed_ghosts: tuple[int, ...] = field(default=())


@dataclass(frozen=True)
class Ownership:
    """Proof that a worker holds a RUNNING row: only its holder may beat or finish it."""

    run_id: int
    token: str


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
    worker_started_at: datetime | None
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
    token_user_id: int | None = None
    token_username: str | None = None
    token_is_site_admin: bool | None = None
    warning: str | None = None

    @property
    def token_label(self) -> str | None:
        """``moodlesync (id 20)`` / ``admin (id 2, site admin)``; None before the token was read."""
        if self.token_user_id is None:
            return None
        admin = ", site admin" if self.token_is_site_admin else ""
        return f"{self.token_username or '?'} (id {self.token_user_id}{admin})"

    @property
    def duration_seconds(self) -> float | None:
        """The sync's own time (from when its worker started), without queue and start-up."""
        if self.finished_at is None:
            return None
        return (self.finished_at - (self.worker_started_at or self.started_at)).total_seconds()

    @property
    def queued_seconds(self) -> float | None:
        if self.worker_started_at is None:
            return None
        return max(0.0, (self.worker_started_at - self.started_at).total_seconds())


def _row(run: IntegrationSyncRun) -> RunRow:
    return RunRow(**{name: getattr(run, name) for name in RunRow.__dataclass_fields__})


def _fmt(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ")


def _count_values(counts: RunCounts) -> dict[str, object]:
    return {
        "rows_fetched": counts.fetched,
        "rows_inserted": counts.inserted,
        "rows_updated": counts.updated,
        "rows_unchanged": counts.unchanged,
        "rows_deactivated": counts.deactivated,
        "rows_rejected": counts.rejected,
        "rows_unmatched": counts.unmatched,
        "requests_made": counts.requests,
        "retries": counts.retries,
        "responses_429": counts.responses_429,
        "backoff_seconds": round(counts.backoff_seconds, 3),
    }


class SyncHistory:
    """The sync history of one app database, with its heartbeat policy."""

    def __init__(self, engine: Engine, *, heartbeat_timeout: timedelta | float = DEFAULT_HEARTBEAT_TIMEOUT_S):
        self.engine = engine
        if not isinstance(heartbeat_timeout, timedelta):
            heartbeat_timeout = timedelta(seconds=heartbeat_timeout)
        self.heartbeat_timeout = heartbeat_timeout

    @property
    def heartbeat_interval(self) -> float:
        """How often a running sync beats: at least three beats per timeout, so a healthy worker
        is never judged lost when the timeout is set below the usual interval."""
        return min(HEARTBEAT_INTERVAL_S, self.heartbeat_timeout.total_seconds() / 3)

    # --- starting -------------------------------------------------------------------------------

    def reconcile_ghosts(
        self,
        *,
        target: SyncTarget | None = None,
        run_state: RunStateCheck | None = None,
        now: datetime | None = None,
    ) -> list[int]:
        """Close RUNNING rows whose worker is gone; return their ids."""
        now = now or utcnow()
        closed: list[int] = []
        with transaction(self.engine) as session:
            query = select(IntegrationSyncRun).where(IntegrationSyncRun.status == SyncStatus.RUNNING.value)
            if target is not None:
                query = query.where(IntegrationSyncRun.target == target.value)
            for run in session.scalars(query).all():
                last_sign = run.heartbeat_at or run.started_at
                state = run_state(run.dagster_run_id) if (run.dagster_run_id and run_state is not None) else None
                reason = None
                if state == RunState.OVER:
                    reason = f"worker lost: Dagster run {run.dagster_run_id} ended without closing this sync"
                elif state == RunState.QUEUED:
                    # Waiting in Dagster's queue: not a ghost. Nothing beats yet, so count the
                    # timeout from now: a run that waited longer than the timeout (daemon
                    # restarted, queue full) must not be closed the moment it starts.
                    run.heartbeat_at = now
                    continue
                elif last_sign < now - self.heartbeat_timeout:
                    timeout = int(self.heartbeat_timeout.total_seconds())
                    reason = f"worker lost: no heartbeat since {_fmt(last_sign)} (timeout {timeout} s)"
                if reason:
                    run.status = SyncStatus.FAILED.value
                    run.finished_at = now
                    run.error = reason
                    closed.append(run.id)
        return closed

    def claim(
        self,
        target: SyncTarget,
        trigger: SyncTrigger,
        *,
        force: bool = False,
        dagster_run_id: str | None = None,
        run_state: RunStateCheck | None = None,
        now: datetime | None = None,
    ) -> Claim:
        """Start a sync of `target`: a RUNNING row, or a SKIPPED one naming the sync that holds it."""
        now = now or utcnow()
        ghosts = tuple(self.reconcile_ghosts(target=target, run_state=run_state, now=now))
        try:
            with transaction(self.engine) as session:
                run = IntegrationSyncRun(
                    target=target.value,
                    status=SyncStatus.RUNNING.value,
                    trigger=trigger.value,
                    dagster_run_id=dagster_run_id,
                    started_at=now,
                    heartbeat_at=now,
                    forced=force,
                )
                session.add(run)
                session.flush()  # the unique index decides here
                config_table.mark_started(session, target, now)
                return Claim(run.id, target, True, None, ghosts)
        except IntegrityError:
            pass
        with transaction(self.engine) as session:
            holder = session.scalars(
                select(IntegrationSyncRun)
                .where(
                    IntegrationSyncRun.target == target.value,
                    IntegrationSyncRun.status == SyncStatus.RUNNING.value,
                )
                .order_by(IntegrationSyncRun.started_at)
            ).first()
            if holder is not None:
                reason = f"{target.value} is already syncing (sync run #{holder.id}, started {_fmt(holder.started_at)}"
                reason += f", Dagster run {holder.dagster_run_id})" if holder.dagster_run_id else ")"
            else:
                reason = f"{target.value} is already syncing"
            skipped = self._add_skip(
                session, target, trigger, reason, now=now, dagster_run_id=dagster_run_id, forced=force
            )
            return Claim(skipped, target, False, reason, ghosts)

    def take(self, run_id: int, dagster_run_id: str, *, now: datetime | None = None) -> Ownership | None:
        """The run worker takes a RUNNING row claimed for it; None if the row is no longer RUNNING
        or another worker already took it."""
        now = now or utcnow()
        token = str(uuid.uuid4())
        with transaction(self.engine) as session:
            result = session.execute(
                update(IntegrationSyncRun)
                .where(
                    IntegrationSyncRun.id == run_id,
                    IntegrationSyncRun.status == SyncStatus.RUNNING.value,
                    IntegrationSyncRun.worker_token.is_(None),
                )
                .values(worker_token=token, worker_started_at=now, heartbeat_at=now, dagster_run_id=dagster_run_id)
            )
            return Ownership(run_id, token) if rowcount(result) == 1 else None

    def attach_dagster_run(self, run_ids: Iterable[int], dagster_run_id: str) -> None:
        """Record which Dagster run will sync the claimed rows (before it is submitted)."""
        with transaction(self.engine) as session:
            session.execute(
                update(IntegrationSyncRun)
                .where(IntegrationSyncRun.id.in_(list(run_ids)))
                .values(dagster_run_id=dagster_run_id)
            )

    # --- while running --------------------------------------------------------------------------

    def heartbeat(self, owner: Ownership, now: datetime | None = None) -> bool:
        """Record that the sync is alive; False if its row is no longer RUNNING under this owner."""
        with transaction(self.engine) as session:
            result = session.execute(
                update(IntegrationSyncRun)
                .where(
                    IntegrationSyncRun.id == owner.run_id,
                    IntegrationSyncRun.status == SyncStatus.RUNNING.value,
                    IntegrationSyncRun.worker_token == owner.token,
                )
                .values(heartbeat_at=now or utcnow())
            )
            return rowcount(result) == 1

    def note_token(self, owner: Ownership, *, user_id: int, username: str | None, is_site_admin: bool) -> bool:
        """Record who the token is (site info, read at the start of the sync) on the owner's row."""
        with transaction(self.engine) as session:
            result = session.execute(
                update(IntegrationSyncRun)
                .where(
                    IntegrationSyncRun.id == owner.run_id,
                    IntegrationSyncRun.status == SyncStatus.RUNNING.value,
                    IntegrationSyncRun.worker_token == owner.token,
                )
                .values(token_user_id=user_id, token_username=username, token_is_site_admin=is_site_admin)
            )
            return rowcount(result) == 1

    # --- ending ---------------------------------------------------------------------------------

    def finish(
        self,
        owner: Ownership,
        status: SyncStatus,
        *,
        counts: RunCounts | None = None,
        error: str | None = None,
        warning: str | None = None,
        now: datetime | None = None,
    ) -> bool:
        """Close the owner's RUNNING row as SUCCESS or FAILED; False (nothing written) when the
        row was closed meanwhile or is held by another worker. `warning`: what the run could not
        see although it succeeded."""
        if status not in (SyncStatus.SUCCESS, SyncStatus.FAILED):
            raise ValueError(f"a sync finishes SUCCESS or FAILED, not {status}")
        values: dict[str, object] = {
            "status": status.value,
            "finished_at": now or utcnow(),
            "error": clip(redact(error) or "") if error else None,
            "warning": clip(redact(warning) or "") if warning else None,
        }
        if counts is not None:
            values.update(_count_values(counts))
        with transaction(self.engine) as session:
            result = session.execute(
                update(IntegrationSyncRun)
                .where(
                    IntegrationSyncRun.id == owner.run_id,
                    IntegrationSyncRun.status == SyncStatus.RUNNING.value,
                    IntegrationSyncRun.worker_token == owner.token,
                )
                .values(**values)
            )
            return rowcount(result) == 1

    def fail_unstarted(self, run_ids: Iterable[int], reason: str, *, now: datetime | None = None) -> list[int]:
        """Close claimed rows that no worker took (the launch failed): FAILED with the reason."""
        now = now or utcnow()
        with transaction(self.engine) as session:
            runs = session.scalars(
                select(IntegrationSyncRun).where(
                    IntegrationSyncRun.id.in_(list(run_ids)),
                    IntegrationSyncRun.status == SyncStatus.RUNNING.value,
                    IntegrationSyncRun.worker_token.is_(None),
                )
            ).all()
            for run in runs:
                run.status = SyncStatus.FAILED.value
                run.finished_at = now
                run.error = clip(redact(reason) or "")
            return [run.id for run in runs]

    def close_dagster_run(self, dagster_run_id: str, *, error: str, now: datetime | None = None) -> list[int]:
        """A Dagster run ended (failure, cancel, crash): close its still-RUNNING rows as FAILED."""
        now = now or utcnow()
        with transaction(self.engine) as session:
            runs = session.scalars(
                select(IntegrationSyncRun).where(
                    IntegrationSyncRun.dagster_run_id == dagster_run_id,
                    IntegrationSyncRun.status == SyncStatus.RUNNING.value,
                )
            ).all()
            for run in runs:
                run.status = SyncStatus.FAILED.value
                run.finished_at = now
                run.error = clip(redact(error) or "")
            return [run.id for run in runs]

    def record_not_started(
        self,
        dagster_run_id: str,
        targets: Sequence[SyncTarget],
        trigger: SyncTrigger,
        *,
        canceled: bool,
        message: str,
        now: datetime | None = None,
    ) -> list[int]:
        """Rows for targets a Dagster run was meant to sync but never started: SKIPPED when the run
        was canceled, FAILED when it failed. Targets that already have a row of that run are left."""
        now = now or utcnow()
        text = clip(redact(f"not started: {message}") or "")
        recorded: list[int] = []
        with transaction(self.engine) as session:
            seen = set(
                session.scalars(
                    select(IntegrationSyncRun.target).where(IntegrationSyncRun.dagster_run_id == dagster_run_id)
                ).all()
            )
            for target in targets:
                if target.value in seen:
                    continue
                row = IntegrationSyncRun(
                    target=target.value,
                    status=(SyncStatus.SKIPPED if canceled else SyncStatus.FAILED).value,
                    trigger=trigger.value,
                    dagster_run_id=dagster_run_id,
                    started_at=now,
                    finished_at=now,
                    forced=False,
                    error=None if canceled else text,
                    skip_reason=text if canceled else None,
                )
                session.add(row)
                session.flush()
                recorded.append(row.id)
        return recorded

    def skip(
        self,
        target: SyncTarget,
        trigger: SyncTrigger,
        reason: str,
        *,
        dagster_run_id: str | None = None,
        now: datetime | None = None,
    ) -> int:
        """Record that a sync of `target` was not started, and why."""
        with transaction(self.engine) as session:
            return self._add_skip(session, target, trigger, reason, now=now or utcnow(), dagster_run_id=dagster_run_id)

    def skip_slot(
        self,
        target: SyncTarget,
        *,
        expected_next_run_at: datetime | None,
        new_next_run_at: datetime,
        reason: str | None = None,
        now: datetime | None = None,
    ) -> int | None:
        """Move a due target's schedule slot on, once (compare-and-set on the config row).

        With `reason`, the slot is recorded as a SKIPPED row (trigger SCHEDULE) in the same
        transaction and its id returned; without, 0. None when the slot had already moved.
        """
        now = now or utcnow()
        with transaction(self.engine) as session:
            moved = config_table.move_slot(
                session, target, expected_next_run_at=expected_next_run_at, new_next_run_at=new_next_run_at
            )
            if not moved:
                return None
            if reason is None:
                return 0
            return self._add_skip(session, target, SyncTrigger.SCHEDULE, reason, now=now)

    @staticmethod
    def _add_skip(
        session,
        target: SyncTarget,
        trigger: SyncTrigger,
        reason: str,
        *,
        now: datetime,
        dagster_run_id: str | None = None,
        forced: bool = False,
    ) -> int:
        run = IntegrationSyncRun(
            target=target.value,
            status=SyncStatus.SKIPPED.value,
            trigger=trigger.value,
            dagster_run_id=dagster_run_id,
            started_at=now,
            finished_at=now,
            forced=forced,
            skip_reason=clip(redact(reason) or ""),
        )
        session.add(run)
        session.flush()
        return int(run.id)

    # --- reading --------------------------------------------------------------------------------

    def get(self, run_id: int) -> RunRow | None:
        with transaction(self.engine) as session:
            run = session.get(IntegrationSyncRun, run_id)
            return _row(run) if run else None

    def recent(self, *, target: SyncTarget | str | None = None, limit: int = 20) -> list[RunRow]:
        """The newest `limit` rows (of `target`), newest first."""
        with transaction(self.engine) as session:
            query = select(IntegrationSyncRun).order_by(
                IntegrationSyncRun.started_at.desc(), IntegrationSyncRun.id.desc()
            )
            if target is not None:
                query = query.where(IntegrationSyncRun.target == SyncTarget.parse(target).value)
            return [_row(r) for r in session.scalars(query.limit(limit)).all()]

    def running(self) -> list[RunRow]:
        with transaction(self.engine) as session:
            query = select(IntegrationSyncRun).where(IntegrationSyncRun.status == SyncStatus.RUNNING.value)
            return [_row(r) for r in session.scalars(query).all()]
