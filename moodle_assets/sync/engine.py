"""Run one target's sync: fetch → map (row-level rejects) → apply in ONE transaction.

A failure anywhere before the commit leaves the previous data exactly as it was. The write
transaction is kept short: everything is fetched and mapped first (enrolments are staged
course by course in a temporary file, so memory stays flat however many there are), then
applied. Long write locks would block other targets and the admin page on SQLite.

The caller steers a sync through a `SyncControl` (the engine knows nothing of the history or
Dagster): `stop_reason()` is asked between fetched pages and courses, and a reason stops the
sync before anything is written (`SyncStopped`); `begin_apply(session)` and `fence(session)`
are called first and last inside the write transaction, and either may raise to roll it back
(the history uses them to commit only while this worker still owns its run).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from resources.moodle_errors import MoodleAccessError, MoodleMissingRecordError

from .. import mappers
from ..core.clock import utcnow
from ..core.counts import RunCounts
from ..core.targets import SyncTarget
from ..store import upserts
from ..store.db import transaction
from .fetch import MoodleFetcher
from .options import SyncOptions

log = logging.getLogger(__name__)

MAX_REPORTED_REJECTS = 50


class SyncStopped(RuntimeError):
    """The caller asked the sync to stop (e.g. its run was taken over); nothing was written."""


def _no_stop() -> str | None:
    return None


def _no_check(_session: Session) -> None:
    return None


@dataclass(frozen=True)
class SyncControl:
    """How the caller steers a running sync; the defaults steer nothing."""

    stop_reason: Callable[[], str | None] = _no_stop  # a reason stops the sync
    begin_apply: Callable[[Session], None] = _no_check  # first in the write transaction
    fence: Callable[[Session], None] = _no_check  # last in it, right before commit

    def check(self) -> None:
        reason = self.stop_reason()
        if reason:
            raise SyncStopped(reason)

    @contextmanager
    def apply(self, engine: Engine) -> Iterator[Session]:
        """The write transaction: committed only if `fence` passes after the body."""
        self.check()
        with transaction(engine) as session:
            self.begin_apply(session)
            yield session
            self.fence(session)


NO_CONTROL = SyncControl()


@dataclass
class SyncOutcome:
    counts: RunCounts = field(default_factory=RunCounts)
    rejected: list[tuple[int | None, str]] = field(default_factory=list)
    skipped: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    def reject(self, items: list[tuple[int | None, str]]) -> None:
        self.counts.rejected += len(items)
        room = MAX_REPORTED_REJECTS - len(self.rejected)
        if room > 0:
            self.rejected.extend(items[:room])

    def apply(self, result: upserts.ApplyResult) -> None:
        self.counts.inserted += result.inserted
        self.counts.updated += result.updated
        self.counts.unchanged += result.unchanged
        self.counts.deactivated += result.deactivated
        self.counts.unmatched += result.unmatched
        if result.rejected:
            self.reject(result.rejected)


def _guard(options: SyncOptions) -> upserts.DeactivationGuard:
    return upserts.DeactivationGuard(options.max_deactivate_fraction, options.deactivation_guard_min_rows)


def _rejections(batch: mappers.MappedBatch) -> list[tuple[int | None, str]]:
    return [(r.moodle_id, r.reason) for r in batch.rejected]


def _listed_ids(batch: mappers.MappedBatch) -> set[int]:
    """Ids Moodle listed whose rows were rejected or skipped: still there, so not "gone"."""
    return {r.moodle_id for r in batch.rejected + batch.skipped_rows if r.moodle_id is not None}


# --- COURSE_CATALOG -------------------------------------------------------------------------


def sync_course_catalog(
    fetcher: MoodleFetcher, engine: Engine, options: SyncOptions, control: SyncControl = NO_CONTROL
) -> SyncOutcome:
    outcome = SyncOutcome()
    now = utcnow()
    category_rows = fetcher.categories()
    control.check()
    course_rows = fetcher.courses()
    categories = mappers.map_rows(mappers.map_moodle_category_row, category_rows, synced_at=now)
    courses = mappers.map_rows(
        mappers.map_moodle_course_row,
        course_rows,
        synced_at=now,
        price_field=options.price_field,
        currency_field=options.currency_field,
        default_currency=options.default_currency,
    )
    outcome.counts.fetched = categories.fetched + courses.fetched
    outcome.skipped = categories.skipped + courses.skipped
    outcome.reject(_rejections(categories) + _rejections(courses))
    guard = _guard(options)
    with control.apply(engine) as session:
        cat_result = upserts.apply_categories(
            session, categories.records, now=now, guard=guard, keep=_listed_ids(categories)
        )
        course_result, enrollments_closed = upserts.apply_courses(
            session, courses.records, now=now, guard=guard, keep=_listed_ids(courses)
        )
    outcome.apply(cat_result)
    outcome.apply(course_result)
    outcome.details.update(
        categories_fetched=categories.fetched,
        categories_inserted=cat_result.inserted,
        categories_updated=cat_result.updated,
        categories_deactivated=cat_result.deactivated,
        courses_fetched=courses.fetched,
        courses_inserted=course_result.inserted,
        courses_updated=course_result.updated,
        courses_deactivated=course_result.deactivated,
        courses_with_price=sum(1 for c in courses.records if c.price is not None),
        enrollments_deactivated_with_course=enrollments_closed,
        site_course_skipped=courses.skipped,
    )
    outcome.counts.deactivated += enrollments_closed
    return outcome


# --- USER_DIRECTORY -------------------------------------------------------------------------


def _user_rows(fetcher: MoodleFetcher, ids: list[int], concurrency: int, control: SyncControl) -> Iterator[Any]:
    """Every row of every ``core_user_get_users_by_field`` batch, in batch (id) order.

    ``concurrency`` batches are in flight at once and at most twice that many fetched pages are
    held; a page is released once its rows have been consumed (mapped). A failed batch raises
    here, after the batches not yet started are cancelled.
    """
    batches = iter(fetcher.user_batches(ids))
    ahead = max(1, concurrency) * 2
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        pending: deque[Future[list[Any]]] = deque()
        try:
            for batch in islice(batches, ahead):
                pending.append(pool.submit(fetcher.users_by_id, batch))
            while pending:
                page = pending.popleft().result()
                control.check()
                for batch in islice(batches, 1):
                    pending.append(pool.submit(fetcher.users_by_id, batch))
                yield from page
                del page
        finally:
            for future in pending:
                future.cancel()


def sync_user_directory(
    fetcher: MoodleFetcher, engine: Engine, options: SyncOptions, control: SyncControl = NO_CONTROL
) -> SyncOutcome:
    outcome = SyncOutcome()
    now = utcnow()
    ids = fetcher.user_ids()
    control.check()
    # Streamed: each batch is mapped as it arrives and its raw rows dropped, so only the compact
    # records stay in memory (raw rows were ~3 KB/user: 418 MB peak at 100k users).
    rows = _user_rows(fetcher, ids, options.concurrency, control)
    users = mappers.map_rows(mappers.map_moodle_user_row, rows, synced_at=now)
    outcome.counts.fetched = users.fetched
    outcome.skipped = users.skipped
    outcome.reject(_rejections(users))
    # A user listed among the participants but not returned by id (deleted in between, or
    # hidden from this token), or whose row was rejected, is not "gone": only ids Moodle no
    # longer lists are deactivated.
    returned = {r.moodle_user_id for r in users.records} | _listed_ids(users)
    missing = [i for i in ids if i not in returned]
    with control.apply(engine) as session:
        result = upserts.apply_users(session, users.records, now=now, guard=_guard(options), listed=ids)
    outcome.apply(result)
    outcome.details.update(user_ids_listed=len(ids), users_missing_by_id=len(missing), guest_skipped=users.skipped)
    return outcome


# --- ENROLLMENTS ----------------------------------------------------------------------------


class _Staging:
    """Mapped enrolments parked on disk between the fetch and the write phases."""

    def __init__(self) -> None:
        fd, self.path = tempfile.mkstemp(prefix="moodle-enrolments-", suffix=".sqlite3")
        os.close(fd)
        self.db = sqlite3.connect(self.path, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute(
            "CREATE TABLE enrolment (course_id INTEGER, moodle_course_id INTEGER, moodle_user_id INTEGER,"
            " is_active INTEGER, roles TEXT, last_access REAL)"
        )

    def add(self, course_id: int, records: list[mappers.EnrollmentRecord]) -> None:
        self.db.executemany(
            "INSERT INTO enrolment VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    course_id,
                    r.moodle_course_id,
                    r.moodle_user_id,
                    int(r.is_active),
                    r.roles,
                    r.last_access_at.timestamp() if r.last_access_at else None,
                )
                for r in records
            ],
        )

    def course(self, course_id: int, synced_at: datetime) -> Iterator[mappers.EnrollmentRecord]:
        for moodle_course_id, moodle_user_id, is_active, roles, last_access in self.db.execute(
            "SELECT moodle_course_id, moodle_user_id, is_active, roles, last_access FROM enrolment WHERE course_id = ?",
            (course_id,),
        ):
            yield mappers.EnrollmentRecord(
                moodle_user_id=moodle_user_id,
                moodle_course_id=moodle_course_id,
                is_active=bool(is_active),
                roles=roles,
                last_access_at=datetime.fromtimestamp(last_access, UTC) if last_access is not None else None,
                synced_at=synced_at,
            )

    def finish_writes(self) -> None:
        self.db.execute("CREATE INDEX enrolment_course ON enrolment (course_id)")
        self.db.commit()

    def close(self) -> None:
        self.db.close()
        os.unlink(self.path)


@contextmanager
def _staging() -> Iterator[_Staging]:
    staging = _Staging()
    try:
        yield staging
    finally:
        staging.close()


def _map_course(
    fetcher: MoodleFetcher, moodle_course_id: int, now: datetime
) -> tuple[list[mappers.EnrollmentRecord], list[tuple[int | None, str]], int]:
    """(records, rejections, rows fetched) for one course."""
    active_rows, inactive_rows = fetcher.course_enrolments(moodle_course_id)
    active = mappers.map_rows(
        mappers.map_moodle_enrollment_row, active_rows, moodle_course_id=moodle_course_id, is_active=True, synced_at=now
    )
    inactive = mappers.map_rows(
        mappers.map_moodle_enrollment_row,
        inactive_rows,
        moodle_course_id=moodle_course_id,
        is_active=False,
        synced_at=now,
    )
    # The two lists are disjoint in Moodle; if a user moved between the two calls, active wins.
    active_ids = {r.moodle_user_id for r in active.records}
    records = active.records + [r for r in inactive.records if r.moodle_user_id not in active_ids]
    return records, _rejections(active) + _rejections(inactive), active.fetched + inactive.fetched


def sync_enrollments(
    fetcher: MoodleFetcher,
    engine: Engine,
    options: SyncOptions,
    control: SyncControl = NO_CONTROL,
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> SyncOutcome:
    outcome = SyncOutcome()
    now = utcnow()
    with transaction(engine) as session:
        courses = upserts.active_courses(session)
    skipped_courses: dict[int, str] = {}
    skipped_deactivation: set[int] = set()
    kept: dict[int, list[int]] = {}
    with _staging() as staging:
        done = 0
        with ThreadPoolExecutor(max_workers=options.concurrency) as pool:
            pending: dict[Future, tuple[int, int]] = {}
            queue = list(courses)
            window = options.concurrency * 2  # bounded in-flight work keeps memory flat
            while queue or pending:
                while queue and len(pending) < window:
                    local_id, moodle_id = queue.pop(0)
                    pending[pool.submit(_map_course, fetcher, moodle_id, now)] = (local_id, moodle_id)
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                try:
                    control.check()
                except SyncStopped:
                    for other in pending:
                        other.cancel()
                    raise
                for future in finished:
                    local_id, moodle_id = pending.pop(future)
                    try:
                        records, rejects, fetched = future.result()
                    except (MoodleAccessError, MoodleMissingRecordError) as exc:
                        # This course cannot be read (gone since the catalog sync, or no
                        # permission): keep its enrolments as they are, deactivate nothing.
                        skipped_courses[moodle_id] = f"{exc.__class__.__name__}: {exc.errorcode or exc}"
                        continue
                    except BaseException:
                        for other in pending:
                            other.cancel()
                        raise
                    outcome.counts.fetched += fetched
                    outcome.reject(rejects)
                    if any(moodle_user is None for moodle_user, _ in rejects):
                        # A rejected row without a readable user id: we cannot tell which
                        # stored enrolment it was, so this course deactivates nothing.
                        skipped_deactivation.add(moodle_id)
                    kept[moodle_id] = [m for m, _ in rejects if m is not None]
                    staging.add(local_id, records)
                    done += 1
                    if on_progress:
                        on_progress(done, len(courses))
        staging.finish_writes()
        scope = upserts.EnrollmentScope()
        with control.apply(engine) as session:
            users = upserts.user_ids(session)
            for local_id, moodle_id in courses:
                if moodle_id in skipped_courses:
                    continue
                keep = kept.get(moodle_id, [])
                if moodle_id in skipped_deactivation:
                    keep = list(users)  # every stored enrolment of this course stays as it is
                result = upserts.apply_course_enrollments(
                    session,
                    local_id,
                    staging.course(local_id, now),
                    users=users,
                    now=now,
                    scope=scope,
                    keep_moodle_users=keep,
                )
                outcome.apply(result)
            outcome.counts.deactivated += upserts.finish_enrollments(session, scope, now=now, guard=_guard(options))
            outcome.counts.deactivated += upserts.deactivate_enrollments_of_inactive_courses(session, now=now)
    outcome.details.update(
        courses_synced=len(courses) - len(skipped_courses),
        courses_skipped=len(skipped_courses),
        courses_skipped_reasons={str(k): v for k, v in list(skipped_courses.items())[:20]},
    )
    return outcome


SYNC_FUNCTIONS: dict[SyncTarget, Callable[[MoodleFetcher, Engine, SyncOptions, SyncControl], SyncOutcome]] = {
    SyncTarget.COURSE_CATALOG: sync_course_catalog,
    SyncTarget.USER_DIRECTORY: sync_user_directory,
    SyncTarget.ENROLLMENTS: sync_enrollments,
}
