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
- **No ghosts.** `reconcile_ghosts` closes RUNNING rows whose worker is gone as FAILED
  ("worker lost") before a claim: at once when the row's liveness lock is free (the process
  that held it died: see `liveness.py`), when its Dagster run is over, or when it has had no
  heartbeat within the timeout (the fallback: a stopped or hung worker, a lost host).
- **Fencing.** A worker commits its changes only while its row is still RUNNING and its own:
  `fence` is called inside the write transaction, first and right before commit, and rolls
  it back otherwise (`LostOwnership`). So a worker that was stopped past the timeout, or cut
  off, and whose target has since been synced by a new owner, never overwrites the new data.
- Every other way a row ends (skipped slot, launch failure, a Dagster run that failed or was
  canceled before its step ran) is a method here too, so the history has no gaps.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from schedules import config_table

from ..core.clock import utcnow
from ..core.counts import RunCounts, breakdown
from ..core.redaction import clip, redact
from ..core.targets import SyncStatus, SyncTarget, SyncTrigger
from ..store.db import rowcount, transaction
from ..store.models import IntegrationSyncRun
from .liveness import Liveness, liveness_for, this_host

log = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_TIMEOUT_S = 180
HEARTBEAT_INTERVAL_S = 10.0


class RunState:
    """Where a Dagster run is, as far as a RUNNING row is concerned."""

    QUEUED = "QUEUED"  # not started yet: waiting is not dying
    RUNNING = "RUNNING"  # started: its heartbeat must stay fresh
    OVER = "OVER"  # ended


# Given a Dagster run id: RunState.QUEUED / RUNNING / OVER, or None when unknown.
RunStateCheck = Callable[[str], "str | None"]
# Told (Dagster run id, reason) when a row was closed because the process running it is gone
# (its liveness lock was free) or unresponsive (no heartbeat within the timeout), so the caller
# can end that Dagster run too: it would otherwise look alive until run monitoring notices (or
# forever, for a killed `sync` command) and hold the run queue's slot for its targets.
WorkerGone = Callable[[str, str], None]


class LostOwnership(RuntimeError):
    """This worker's row is no longer RUNNING under its token: it must not commit anything."""


@dataclass(frozen=True)
class Holder:
    """The live sync that holds a target, as a claim that lost to it reports it."""

    run_id: int
    started_at: datetime
    heartbeat_at: datetime | None
    dagster_run_id: str | None
    host: str | None
    pid: int | None

    def describe(self) -> str:
        parts = [f"sync run #{self.run_id}", f"started {_fmt(self.started_at)}"]
        if self.dagster_run_id:
            parts.append(f"Dagster run {self.dagster_run_id}")
        if self.pid is not None:
            parts.append(f"pid {self.pid} on host {self.host or '?'}")
        if self.heartbeat_at is not None:
            parts.append(f"last heartbeat {_fmt(self.heartbeat_at)}")
        return ", ".join(parts)

    def as_json(self) -> dict[str, object]:
        return {
            "sync_run_id": self.run_id,
            "started_at": self.started_at.isoformat(),
            "heartbeat_at": self.heartbeat_at.isoformat() if self.heartbeat_at else None,
            "dagster_run_id": self.dagster_run_id,
            "host": self.host,
            "pid": self.pid,
        }


@dataclass(frozen=True)
class Claim:
    run_id: int
    target: SyncTarget
    started: bool  # False: recorded as SKIPPED
    reason: str | None = None
    closed_ghosts: tuple[int, ...] = field(default=())
    holder: Holder | None = None  # when not started: the live sync holding the target


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
    worker_host: str | None
    worker_pid: int | None
    worker_lock: str | None
    applied_at: datetime | None
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
    rows_skipped: int | None = None

    @property
    def token_label(self) -> str | None:
        """``moodlesync (id 20)`` / ``admin (id 2, site admin)``; None before the token was read."""
        if self.token_user_id is None:
            return None
        admin = ", site admin" if self.token_is_site_admin else ""
        return f"{self.token_username or '?'} (id {self.token_user_id}{admin})"

    @property
    def sync_started_at(self) -> datetime | None:
        """When the sync itself began: its worker took the row (`take`, right before the engine
        reads anything). None when no worker ever took it (skipped, refused before the start, or
        its Dagster run ended first)."""
        return self.worker_started_at

    @property
    def duration_seconds(self) -> float | None:
        """The sync's own time (from when its worker started to finish), without queue and
        start-up; None while running or when no worker started it."""
        if self.finished_at is None or self.worker_started_at is None:
            return None
        return max(0.0, (self.finished_at - self.worker_started_at).total_seconds())

    @property
    def queued_seconds(self) -> float | None:
        """From the claim (trigger, schedule tick, `sync` command) to the sync's start."""
        if self.worker_started_at is None:
            return None
        return max(0.0, (self.worker_started_at - self.started_at).total_seconds())

    @property
    def has_counts(self) -> bool:
        """Row counts are known: a SUCCESS row (a failed sync writes nothing, so its row counts are
        unknown, not zero)."""
        return self.status == SyncStatus.SUCCESS.value and self.rows_fetched is not None

    @property
    def counts_add_up(self) -> bool | None:
        """fetched = inserted + updated + unchanged + rejected + skipped; None when not known."""
        if not self.has_counts or self.rows_skipped is None:
            return None
        parts = (self.rows_inserted, self.rows_updated, self.rows_unchanged, self.rows_rejected, self.rows_skipped)
        return self.rows_fetched == sum(p or 0 for p in parts)

    @property
    def breakdown(self) -> str | None:
        """``fetched 30 = inserted 5 + … + skipped 3`` for a SUCCESS row; None when not known."""
        if not self.has_counts:
            return None
        return breakdown(
            self.rows_fetched or 0,
            self.rows_inserted or 0,
            self.rows_updated or 0,
            self.rows_unchanged or 0,
            self.rows_rejected or 0,
            self.rows_skipped or 0,
        )


def _row(run: IntegrationSyncRun) -> RunRow:
    return RunRow(**{name: getattr(run, name) for name in RunRow.__dataclass_fields__})


def _fmt(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ")


def _who(run: IntegrationSyncRun) -> str:
    if run.worker_pid is None:
        return "its worker"
    return f"its worker (pid {run.worker_pid} on host {run.worker_host or '?'})"


def _holder(run: IntegrationSyncRun) -> Holder:
    return Holder(run.id, run.started_at, run.heartbeat_at, run.dagster_run_id, run.worker_host, run.worker_pid)


def _count_values(counts: RunCounts) -> dict[str, object]:
    return {
        "rows_fetched": counts.fetched,
        "rows_inserted": counts.inserted,
        "rows_updated": counts.updated,
        "rows_unchanged": counts.unchanged,
        "rows_deactivated": counts.deactivated,
        "rows_rejected": counts.rejected,
        "rows_skipped": counts.skipped,
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
        self.liveness: Liveness = liveness_for(engine)
        self._postgres = engine.dialect.name == "postgresql"

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        """A transaction on the history. On PostgreSQL it may not sit idle longer than the heartbeat
        timeout: a process stopped inside it (SIGSTOP, a paused VM) would otherwise keep its row
        locks, and no one could close its row; the server ends such a session instead.
        (SQLite cannot do this: a process stopped inside a write transaction holds the database's
        write lock until it resumes or dies.)"""
        with transaction(self.engine) as session:
            if self._postgres:
                session.execute(text(f"SET LOCAL idle_in_transaction_session_timeout = {self._idle_ms}"))
            yield session

    @property
    def _idle_ms(self) -> int:
        return int(self.heartbeat_timeout.total_seconds() * 1000)

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
        on_worker_gone: WorkerGone | None = None,
        now: datetime | None = None,
    ) -> list[int]:
        """Close RUNNING rows whose worker is gone; return their ids."""
        now = now or utcnow()
        reasons: dict[int, str] = {}  # closed rows, in order
        gone: list[tuple[int, str | None, str]] = []
        timeout = int(self.heartbeat_timeout.total_seconds())
        with self._transaction() as session:
            query = select(IntegrationSyncRun).where(IntegrationSyncRun.status == SyncStatus.RUNNING.value)
            if target is not None:
                query = query.where(IntegrationSyncRun.target == target.value)
            if self._postgres:
                # A row locked by its worker's fence is committing right now: alive, leave it.
                # (SQLite: BEGIN IMMEDIATE already serializes this with every writer.)
                query = query.with_for_update(skip_locked=True)
            runs = session.scalars(query).all()
            locks = self.liveness.probe([(r.id, r.worker_host) for r in runs if r.worker_lock], session)
            for run in runs:
                lock_held = locks.get(run.id)
                last_sign = run.heartbeat_at or run.started_at
                state = run_state(run.dagster_run_id) if (run.dagster_run_id and run_state is not None) else None
                reason = None
                if lock_held is False:
                    reason = f"worker lost: {_who(run)} ended without closing this sync (its liveness lock was free)"
                    if run.applied_at is not None:
                        reason += f"; its changes had been committed at {_fmt(run.applied_at)}"
                    reason += f"; last heartbeat {_fmt(last_sign)}"
                    gone.append((run.id, run.dagster_run_id, reason))
                elif state == RunState.OVER:
                    reason = f"worker lost: Dagster run {run.dagster_run_id} ended without closing this sync"
                elif state == RunState.QUEUED and not lock_held:
                    # Waiting in Dagster's queue: not a ghost. Nothing beats yet, so count the
                    # timeout from now: a run that waited longer than the timeout (daemon
                    # restarted, queue full) must not be closed the moment it starts.
                    run.heartbeat_at = now
                    continue
                elif last_sign < now - self.heartbeat_timeout:
                    reason = f"worker lost: no heartbeat since {_fmt(last_sign)} (timeout {timeout} s)"
                    if lock_held:
                        reason += (
                            f"; {_who(run)} still holds its liveness lock: stopped, hung or cut off from the "
                            "database (its writes are fenced off)"
                        )
                    gone.append((run.id, run.dagster_run_id, reason))
                if reason:
                    run.status = SyncStatus.FAILED.value
                    run.finished_at = now
                    run.error = reason
                    reasons[run.id] = reason
        for run_id, why in reasons.items():
            log.warning("closed sync run #%s: %s", run_id, why)
        for run_id, dagster_run_id, reason in gone:
            if locks.get(run_id) is False:
                self.liveness.tidy(run_id)
            if dagster_run_id and on_worker_gone is not None:
                try:
                    on_worker_gone(dagster_run_id, reason)
                except Exception as exc:  # the row is closed; ending the Dagster run is a courtesy
                    log.warning("could not end Dagster run %s of a lost worker: %s", dagster_run_id, exc)
        return list(reasons)

    def claim(
        self,
        target: SyncTarget,
        trigger: SyncTrigger,
        *,
        force: bool = False,
        dagster_run_id: str | None = None,
        run_state: RunStateCheck | None = None,
        on_worker_gone: WorkerGone | None = None,
        hold: bool = False,
        now: datetime | None = None,
    ) -> Claim:
        """Start a sync of `target`: a RUNNING row, or a SKIPPED one naming the sync that holds it.

        `hold`: this process will run the sync itself (the `sync` command), so it takes the
        row's liveness lock now; if it dies before it finishes, the row is closed at once."""
        now = now or utcnow()
        ghosts = tuple(
            self.reconcile_ghosts(target=target, run_state=run_state, on_worker_gone=on_worker_gone, now=now)
        )
        held: int | None = None
        try:
            with self._transaction() as session:
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
                if hold:
                    lock = self.liveness.hold(run.id, session)
                    if lock is not None:
                        held = run.id
                        run.worker_host, run.worker_pid, run.worker_lock = this_host(), os.getpid(), lock
                config_table.mark_started(session, target, now)
                claim = Claim(run.id, target, True, None, ghosts)
            return claim
        except IntegrityError:
            if held is not None:
                self.liveness.release(held)
        except BaseException:
            if held is not None:
                self.liveness.release(held)
            raise
        with self._transaction() as session:
            holder_row = session.scalars(
                select(IntegrationSyncRun)
                .where(
                    IntegrationSyncRun.target == target.value,
                    IntegrationSyncRun.status == SyncStatus.RUNNING.value,
                )
                .order_by(IntegrationSyncRun.started_at)
            ).first()
            holder = _holder(holder_row) if holder_row is not None else None
            if holder is not None:
                reason = f"{target.value} is already syncing ({holder.describe()})"
            else:
                reason = f"{target.value} is already syncing"
            skipped = self._add_skip(
                session, target, trigger, reason, now=now, dagster_run_id=dagster_run_id, forced=force
            )
            return Claim(skipped, target, False, reason, ghosts, holder)

    def hold(self, run_ids: Iterable[int]) -> list[int]:
        """This process (a run worker) becomes responsible for rows claimed for its Dagster run
        that no process holds yet: it takes their liveness locks, so if it dies before it
        reaches them they are closed at once too. Returns the ids it took on."""
        wanted = [i for i in run_ids if not self.liveness.held_here(i)]
        if not wanted:
            return []
        taken: list[int] = []
        try:
            with self._transaction() as session:
                rows = session.scalars(
                    select(IntegrationSyncRun).where(
                        IntegrationSyncRun.id.in_(wanted),
                        IntegrationSyncRun.status == SyncStatus.RUNNING.value,
                        IntegrationSyncRun.worker_token.is_(None),
                        IntegrationSyncRun.worker_lock.is_(None),
                    )
                ).all()
                for row in rows:
                    lock = self.liveness.hold(row.id, session)
                    if lock is not None:
                        taken.append(row.id)
                        row.worker_host, row.worker_pid, row.worker_lock = this_host(), os.getpid(), lock
        except BaseException:
            for run_id in taken:
                self.liveness.release(run_id)
            raise
        return taken

    def take(self, run_id: int, dagster_run_id: str, *, now: datetime | None = None) -> Ownership | None:
        """The run worker takes a RUNNING row claimed for it; None if the row is no longer RUNNING
        or another worker already took it. The row's liveness lock is taken first (kept if this
        process holds it already), then recorded with the token."""
        now = now or utcnow()
        token = str(uuid.uuid4())
        lock = self.liveness.hold(run_id)
        ok = False
        try:
            with self._transaction() as session:
                result = session.execute(
                    update(IntegrationSyncRun)
                    .where(
                        IntegrationSyncRun.id == run_id,
                        IntegrationSyncRun.status == SyncStatus.RUNNING.value,
                        IntegrationSyncRun.worker_token.is_(None),
                    )
                    .values(
                        worker_token=token,
                        worker_started_at=now,
                        heartbeat_at=now,
                        dagster_run_id=dagster_run_id,
                        worker_host=this_host(),
                        worker_pid=os.getpid(),
                        worker_lock=lock,
                    )
                )
                ok = rowcount(result) == 1
        finally:
            if not ok:
                self.liveness.release(run_id)
        return Ownership(run_id, token) if ok else None

    def attach_dagster_run(self, run_ids: Iterable[int], dagster_run_id: str) -> None:
        """Record which Dagster run will sync the claimed rows (before it is submitted)."""
        with self._transaction() as session:
            session.execute(
                update(IntegrationSyncRun)
                .where(IntegrationSyncRun.id.in_(list(run_ids)))
                .values(dagster_run_id=dagster_run_id)
            )

    # --- while running --------------------------------------------------------------------------

    def heartbeat(self, owner: Ownership, now: datetime | None = None) -> bool:
        """Record that the sync is alive; False if its row is no longer RUNNING under this owner.
        Also keeps this process's liveness locks (re-taken if their database session was lost)."""
        self.liveness.check()
        now = now or utcnow()
        with self._transaction() as session:
            result = session.execute(
                update(IntegrationSyncRun)
                .where(
                    IntegrationSyncRun.id == owner.run_id,
                    IntegrationSyncRun.status == SyncStatus.RUNNING.value,
                    IntegrationSyncRun.worker_token == owner.token,
                )
                .values(heartbeat_at=now)
            )
            # Rows this process answers for but has not reached yet (later targets of its
            # Dagster run) are alive too: a long first target must not get them closed.
            waiting = [i for i in self.liveness.held_ids() if i != owner.run_id]
            if waiting:
                session.execute(
                    update(IntegrationSyncRun)
                    .where(
                        IntegrationSyncRun.id.in_(waiting),
                        IntegrationSyncRun.status == SyncStatus.RUNNING.value,
                        IntegrationSyncRun.worker_token.is_(None),
                        IntegrationSyncRun.worker_pid == os.getpid(),
                    )
                    .values(heartbeat_at=now)
                )
            return rowcount(result) == 1

    def fence(self, owner: Ownership, session: Session, *, final: bool = True) -> None:
        """Inside the worker's write transaction: go on only if the row is still RUNNING and the
        owner's; else raise `LostOwnership`, which rolls the transaction back.

        Called first (`final=False`: a plain check, and on PostgreSQL a cap on how long this
        transaction may sit idle, so a stopped worker's locks on the data are freed by the
        server after the heartbeat timeout) and right before commit (`final=True`: a
        compare-and-set that also refreshes the heartbeat and records `applied_at`; on
        PostgreSQL it locks the row until commit, so a takeover waits for the commit and
        then sees a fresh heartbeat, or skips the row)."""
        if not final:
            if self._postgres:
                session.execute(text(f"SET LOCAL idle_in_transaction_session_timeout = {self._idle_ms}"))
            row = session.execute(
                select(IntegrationSyncRun.status, IntegrationSyncRun.worker_token).where(
                    IntegrationSyncRun.id == owner.run_id
                )
            ).one_or_none()
            if row is None or row.status != SyncStatus.RUNNING.value or row.worker_token != owner.token:
                raise LostOwnership(self._lost_text(owner, session))
            return
        now = utcnow()
        result = session.execute(
            update(IntegrationSyncRun)
            .where(
                IntegrationSyncRun.id == owner.run_id,
                IntegrationSyncRun.status == SyncStatus.RUNNING.value,
                IntegrationSyncRun.worker_token == owner.token,
            )
            .values(heartbeat_at=now, applied_at=now)
        )
        if rowcount(result) != 1:
            raise LostOwnership(self._lost_text(owner, session))

    def _lost_text(self, owner: Ownership, session: Session) -> str:
        row = session.get(IntegrationSyncRun, owner.run_id)
        if row is None:
            return f"lost ownership: sync run #{owner.run_id} is gone"
        if row.status == SyncStatus.RUNNING.value:
            return f"lost ownership: sync run #{owner.run_id} was taken by another worker"
        detail = f": {row.error}" if row.error else ""
        return clip(f"lost ownership: sync run #{owner.run_id} was closed {row.status}{detail}")

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
        try:
            with self._transaction() as session:
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
        finally:
            self.liveness.release(owner.run_id)  # only once the row is closed

    def note_after_close(self, owner: Ownership, note: str) -> bool:
        """Add what the old worker knows to a row that was closed while it still ran (e.g. as
        "worker lost" while it was stopped): it was alive after all, and what it did then."""
        addition = " | " + (clip(redact(note) or "") or "")
        with self._transaction() as session:
            result = session.execute(
                update(IntegrationSyncRun)
                .where(
                    IntegrationSyncRun.id == owner.run_id,
                    IntegrationSyncRun.status != SyncStatus.RUNNING.value,
                    IntegrationSyncRun.worker_token == owner.token,
                )
                .values(error=func.coalesce(IntegrationSyncRun.error, "") + addition)
            )
            return rowcount(result) == 1

    def release(self, run_ids: Iterable[int]) -> None:
        """Let go of the liveness locks this process holds for these rows (closed or not)."""
        for run_id in run_ids:
            self.liveness.release(run_id)

    def fail_unstarted(self, run_ids: Iterable[int], reason: str, *, now: datetime | None = None) -> list[int]:
        """Close claimed rows that no worker took (the launch failed): FAILED with the reason."""
        now = now or utcnow()
        with self._transaction() as session:
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
        with self._transaction() as session:
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
            closed = [run.id for run in runs]
        self.release(closed)
        return closed

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
        with self._transaction() as session:
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

    def close_not_run(
        self,
        dagster_run_id: str,
        targets: Sequence[SyncTarget],
        trigger: SyncTrigger,
        reason: str,
        *,
        now: datetime | None = None,
    ) -> list[int]:
        """Targets of a Dagster run that will not run (an upstream target failed in the same run):
        FAILED with `reason` at once. A row claimed for the run that no worker took yet is closed;
        a target with no row of this run gets a closed one; a row a worker holds is left alone."""
        now = now or utcnow()
        text = clip(redact(reason) or "")
        closed: list[int] = []
        with self._transaction() as session:
            for target in targets:
                rows = session.scalars(
                    select(IntegrationSyncRun).where(
                        IntegrationSyncRun.dagster_run_id == dagster_run_id,
                        IntegrationSyncRun.target == target.value,
                    )
                ).all()
                if not rows:
                    row = IntegrationSyncRun(
                        target=target.value,
                        status=SyncStatus.FAILED.value,
                        trigger=trigger.value,
                        dagster_run_id=dagster_run_id,
                        started_at=now,
                        finished_at=now,
                        forced=False,
                        error=text,
                    )
                    session.add(row)
                    session.flush()
                    closed.append(row.id)
                    continue
                for row in rows:
                    if row.status == SyncStatus.RUNNING.value and row.worker_token is None:
                        row.status, row.finished_at, row.error = SyncStatus.FAILED.value, now, text
                        closed.append(row.id)
        self.release(closed)
        return closed

    def never_succeeded(self, targets: Iterable[SyncTarget]) -> list[SyncTarget]:
        """The targets among `targets` that have no SUCCESS row (never synced)."""
        wanted = list(targets)
        with self._transaction() as session:
            done = set(
                session.scalars(
                    select(IntegrationSyncRun.target)
                    .where(
                        IntegrationSyncRun.target.in_([t.value for t in wanted]),
                        IntegrationSyncRun.status == SyncStatus.SUCCESS.value,
                    )
                    .distinct()
                ).all()
            )
        return [t for t in wanted if t.value not in done]

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
        with self._transaction() as session:
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
        with self._transaction() as session:
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
        with self._transaction() as session:
            run = session.get(IntegrationSyncRun, run_id)
            return _row(run) if run else None

    def recent(self, *, target: SyncTarget | str | None = None, limit: int = 20) -> list[RunRow]:
        """The newest `limit` rows (of `target`), newest first."""
        with self._transaction() as session:
            query = select(IntegrationSyncRun).order_by(
                IntegrationSyncRun.started_at.desc(), IntegrationSyncRun.id.desc()
            )
            if target is not None:
                query = query.where(IntegrationSyncRun.target == SyncTarget.parse(target).value)
            return [_row(r) for r in session.scalars(query.limit(limit)).all()]

    def last_run(self, target: SyncTarget) -> RunRow | None:
        """The newest row that is a sync (RUNNING, SUCCESS or FAILED), not a skipped slot: its
        time and status belong together."""
        with self._transaction() as session:
            run = session.scalars(
                select(IntegrationSyncRun)
                .where(
                    IntegrationSyncRun.target == target.value,
                    IntegrationSyncRun.status != SyncStatus.SKIPPED.value,
                )
                .order_by(IntegrationSyncRun.started_at.desc(), IntegrationSyncRun.id.desc())
                .limit(1)
            ).first()
            return _row(run) if run else None

    def running(self) -> list[RunRow]:
        with self._transaction() as session:
            query = select(IntegrationSyncRun).where(IntegrationSyncRun.status == SyncStatus.RUNNING.value)
            return [_row(r) for r in session.scalars(query).all()]
