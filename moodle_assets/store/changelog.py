"""The change log: what a sync changed, collected while it applies and written in its transaction.

The upserts tell a `ChangeLog` each row they insert, update, deactivate or reactivate (they know
already: they only write rows whose values differ). `flush()` then writes them as a few
executemany INSERTs, right before the sync's commit, and prunes rows past the retention in one
DELETE. A rolled-back sync therefore logs nothing, and a sync that changed nothing writes nothing
(it reads the oldest row's time only, to know whether anything is due for pruning).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, delete, func, select
from sqlalchemy.orm import Session

from ..core.clock import utcnow
from .models import IntegrationChangeLog
from .raw import RawValues, insert_raw

INSERTED = "inserted"
UPDATED = "updated"
DEACTIVATED = "deactivated"
REACTIVATED = "reactivated"
KINDS = (INSERTED, UPDATED, DEACTIVATED, REACTIVATED)

CATEGORY = "category"
COURSE = "course"
COURSE_PRICE = "course_price"
USER = "user"
ENROLLMENT = "enrollment"
ENTITIES = (CATEGORY, COURSE, COURSE_PRICE, USER, ENROLLMENT)

# A course update touching these is logged as a `course_price` change of its own.
PRICE_COLUMNS = ("price", "currency")
# Bookkeeping columns, never reported as "changed".
_NOT_REPORTED = {"id", "synced_at", "is_active", "first_seen_at"}
# Rows per executemany.
FLUSH_CHUNK = 5000
SAMPLE_SIZE = 10

DEFAULT_RETENTION_DAYS = 90
# Core, not the ORM's insert(Model): the ORM drops None values per row and then batches only
# consecutive rows with the same keys (see upserts._insert_rows); Core sends one executemany.
_TABLE = cast(Table, IntegrationChangeLog.__table__)


def enrollment_key(moodle_course_id: Any, moodle_user_id: Any) -> str:
    return f"course {moodle_course_id} user {moodle_user_id}"


def kind_of(was_active: bool, is_active: bool) -> str:
    """An update's kind: deactivated / reactivated when `is_active` flips, else updated."""
    if was_active and not is_active:
        return DEACTIVATED
    if not was_active and is_active:
        return REACTIVATED
    return UPDATED


@dataclass(frozen=True)
class Change:
    entity: str
    moodle_key: str
    kind: str
    columns: tuple[str, ...] = ()


@dataclass
class ChangeSummary:
    """What a sync changed, for its report: counts by kind and entity, and the first changes."""

    by_kind: dict[str, int] = field(default_factory=dict)
    by_entity: dict[str, int] = field(default_factory=dict)
    sample: list[Change] = field(default_factory=list)
    enabled: bool = True

    @property
    def total(self) -> int:
        return sum(self.by_kind.values())


@dataclass
class ChangeLog:
    """Changes of one target's sync, written in the same transaction.

    Unbound, changes are held until `flush`. Bound to the sync's write transaction (`bind`, as
    the engine does), every `FLUSH_CHUNK` changes are written as they come (driver-ready rows,
    one executemany), so a full sync of a million enrolments does not hold a million objects;
    the summary is kept as running counts and the first `SAMPLE_SIZE` changes."""

    target: str
    run_id: int | None = None
    retention_days: int = DEFAULT_RETENTION_DAYS
    # Not yet written: (entity, moodle key, kind, changed columns joined by "," or None).
    pending: list[tuple[str, str, str, str | None]] = field(default_factory=list)
    _by_kind: Counter[str] = field(default_factory=Counter)
    _by_entity: Counter[str] = field(default_factory=Counter)
    _sample: list[Change] = field(default_factory=list)
    _total: int = 0
    _session: Session | None = None
    _now: datetime | None = None

    def bind(self, session: Session, *, now: datetime | None = None) -> None:
        """Write changes into `session`'s transaction as they accumulate, all with time `now`."""
        self._session, self._now = session, now or utcnow()

    def _keep(self, rows: list[tuple[str, str, str, str | None]], entity: str, kind: str) -> None:
        """Keep `rows`, every one of them of `entity` and `kind` (so they are counted at once)."""
        self.pending.extend(rows)
        self._total += len(rows)
        for entity_, key, kind_, columns in rows[: max(0, SAMPLE_SIZE - len(self._sample))]:
            self._sample.append(Change(entity_, key, kind_, tuple(columns.split(",")) if columns else ()))
        if rows:
            self._by_kind[kind] += len(rows)
            self._by_entity[entity] += len(rows)
        if self._session is not None and len(self.pending) >= FLUSH_CHUNK:
            self._write(self._session, self._now or utcnow())

    def add(self, entity: str, moodle_key: Any, kind: str, columns: Iterable[str] = ()) -> None:
        cols = tuple(c for c in columns if c not in _NOT_REPORTED)
        if entity == COURSE and kind == UPDATED:
            price = tuple(c for c in cols if c in PRICE_COLUMNS)
            if price:
                self._keep([(COURSE_PRICE, str(moodle_key), UPDATED, ",".join(price))], COURSE_PRICE, UPDATED)
                cols = tuple(c for c in cols if c not in PRICE_COLUMNS)
                if not cols:
                    return
        self._keep([(entity, str(moodle_key), kind, ",".join(cols) or None)], entity, kind)

    def add_many(self, entity: str, keys: Iterable[Any], kind: str) -> None:
        self._keep([(entity, str(key), kind, None) for key in keys], entity, kind)

    def summary(self) -> ChangeSummary:
        return ChangeSummary(by_kind=dict(self._by_kind), by_entity=dict(self._by_entity), sample=list(self._sample))

    def _write(self, session: Session, now: datetime) -> None:
        if not self.pending:
            return
        at = RawValues(session).ts(now)
        rows = [(self.run_id, self.target, *change, at) for change in self.pending]
        for start in range(0, len(rows), FLUSH_CHUNK):
            insert_raw(session, _TABLE.name, _COLUMNS, rows[start : start + FLUSH_CHUNK])
        self.pending = []

    def flush(self, session: Session, *, now: datetime | None = None) -> int:
        """Write the changes not yet written and prune past the retention; returns the rows this
        log wrote in all."""
        now = now or self._now or utcnow()
        self._write(session, now)
        prune(session, self.retention_days, now=now)
        return self._total


_COLUMNS = ("run_id", "target", "entity", "moodle_key", "kind", "changed_columns", "changed_at")


def prune(session: Session, retention_days: int, *, now: datetime | None = None) -> int:
    """Delete change rows older than `retention_days`: one cheap read (the oldest row, by the
    primary key), and one DELETE only when that row is due."""
    if retention_days <= 0:
        return 0
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    oldest = session.scalar(select(IntegrationChangeLog.changed_at).order_by(IntegrationChangeLog.id).limit(1))
    if oldest is None or oldest >= cutoff:
        return 0
    result = session.execute(delete(IntegrationChangeLog).where(IntegrationChangeLog.changed_at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)


def for_sync(target: str, run_id: int | None, retention_days: int) -> ChangeLog | None:
    """The change log of one sync, or None when the change log is off (retention 0)."""
    if retention_days <= 0:
        return None
    return ChangeLog(target=target, run_id=run_id, retention_days=retention_days)


# --- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChangeFilter:
    run_id: int | None = None
    since: datetime | None = None
    target: str | None = None

    def where(self, query: Any) -> Any:
        if self.run_id is not None:
            query = query.where(IntegrationChangeLog.run_id == self.run_id)
        if self.since is not None:
            query = query.where(IntegrationChangeLog.changed_at >= self.since)
        if self.target is not None:
            query = query.where(IntegrationChangeLog.target == self.target)
        return query


def count_changes(session: Session, where: ChangeFilter) -> int:
    return int(session.scalar(where.where(select(func.count()).select_from(IntegrationChangeLog))) or 0)


def counts_by_kind(session: Session, where: ChangeFilter) -> dict[str, int]:
    """Changes matching `where` by kind, every kind named (0 when none)."""
    query = where.where(select(IntegrationChangeLog.kind, func.count())).group_by(IntegrationChangeLog.kind)
    found = {str(kind): int(n) for kind, n in session.execute(query).all()}
    return {kind: found.get(kind, 0) for kind in KINDS}


def latest_changes(session: Session, where: ChangeFilter, *, limit: int) -> list[IntegrationChangeLog]:
    """The newest `limit` changes matching `where`, oldest first."""
    query = where.where(select(IntegrationChangeLog)).order_by(IntegrationChangeLog.id.desc()).limit(limit)
    return list(reversed(session.scalars(query).all()))


def page_of_changes(
    session: Session, where: ChangeFilter, *, limit: int, offset: int = 0
) -> list[IntegrationChangeLog]:
    """Changes matching `where` in the order they were written, one page."""
    query = where.where(select(IntegrationChangeLog)).order_by(IntegrationChangeLog.id).limit(limit).offset(offset)
    return list(session.scalars(query).all())


def columns_of(row: IntegrationChangeLog) -> list[str]:
    return row.changed_columns.split(",") if row.changed_columns else []
