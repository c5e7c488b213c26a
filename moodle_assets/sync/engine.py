"""Run one target's sync: fetch → map (row-level rejects) → apply in ONE transaction.

A failure anywhere before the commit leaves the previous data exactly as it was. The write
transaction is kept short: everything is fetched and mapped first (enrolments are staged
course by course in a temporary file, so memory stays flat however many there are, and each
course is diffed against its stored rows while later courses are still being fetched), then
applied. Long write locks would block other targets and the admin page on SQLite.

The caller steers a sync through a `SyncControl` (the engine knows nothing of the history or
Dagster): `stop_reason()` is asked between fetched pages and courses, and a reason stops the
sync before anything is written (`SyncStopped`); `begin_apply(session)` and `fence(session)`
are called first and last inside the write transaction, and either may raise to roll it back
(the history uses them to commit only while this worker still owns its run).
"""

from __future__ import annotations

import logging
import marshal
import os
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any, NamedTuple

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from resources.moodle_errors import (
    MoodleAccessError,
    MoodleAccountStateError,
    MoodleError,
    MoodleMissingRecordError,
)

from .. import mappers
from ..core.clock import utcnow
from ..core.counts import RunCounts
from ..core.targets import SyncTarget
from ..store import changelog, upserts
from ..store.db import transaction
from ..store.spool import Spool
from .access import CoursesRefused, TokenAccess, capability_for, read_access
from .course_fetch import FetchedCourse, courses_in_threads, rejections, withheld_counts
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
    run_id: int | None = None  # the history row this sync runs under, named in its change log

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
    details: dict[str, Any] = field(default_factory=dict)
    # Who the token was and what it could see (site info + probes at the start).
    access: TokenAccess | None = None
    # What a person should know although the run succeeded: rows kept because the token could
    # not see them, fields it was not shown, courses that refused it. Shown in the history row.
    warnings: list[str] = field(default_factory=list)
    # What the sync changed (written to the change log in its transaction); disabled: log off.
    changes: changelog.ChangeSummary = field(default_factory=lambda: changelog.ChangeSummary(enabled=False))

    def warn(self, text: str) -> None:
        self.warnings.append(text)

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
        self.counts.skipped += result.unmatched  # fetched, left out: the user is not in the directory yet
        if result.rejected:
            self.reject(result.rejected)


def _change_log(target: SyncTarget, options: SyncOptions, control: SyncControl) -> changelog.ChangeLog | None:
    return changelog.for_sync(target.value, control.run_id, options.changelog_retention_days)


def _bind_changes(changes: changelog.ChangeLog | None, session: Session) -> None:
    """Let the change log write as it fills, in the apply transaction (memory stays flat)."""
    if changes is not None:
        changes.bind(session)


def _log_changes(outcome: SyncOutcome, changes: changelog.ChangeLog | None, session: Session) -> None:
    """Write the change log inside the apply transaction (last before the fence)."""
    if changes is not None:
        changes.flush(session)
        outcome.changes = changes.summary()


def _guard(options: SyncOptions) -> upserts.DeactivationGuard:
    return upserts.DeactivationGuard(options.max_deactivate_fraction, options.deactivation_guard_min_rows)


def _listed_ids(batch: mappers.MappedBatch) -> set[int]:
    """Ids Moodle listed whose rows were rejected or skipped: still there, so not "gone"."""
    return {r.moodle_id for r in batch.rejected + batch.skipped_rows if r.moodle_id is not None}


# The capability behind each field a token may not be shown (docs/moodle-setup.md §4).
_FIELD_CAPABILITY = {
    ("users", "username"): "moodle/user:viewalldetails",
    ("users", "id_number"): "moodle/user:viewalldetails",
    ("users", "email"): "moodle/site:viewuseridentity",
    ("users", "first_name"): "moodle/site:viewfullnames",
    ("users", "last_name"): "moodle/site:viewfullnames",
    ("users", "is_suspended"): "moodle/user:viewhiddendetails",
    ("users", "last_access_at"): "moodle/user:viewhiddendetails",
    ("courses", "id_number"): "moodle/course:update",
    ("courses", "is_visible"): "moodle/course:view",
    ("courses", "start_at"): "moodle/course:view",
    ("courses", "end_at"): "moodle/course:view",
    ("courses", "price"): "moodle/course:update, or the price field's visibility 'Everyone'",
    ("categories", "is_visible"): "moodle/category:manage",
    ("enrollments", "last_access_at"): "moodle/course:viewhiddenuserfields",
}


def _warn_withheld(outcome: SyncOutcome, table: str, counts: dict[str, int]) -> None:
    """One warning per table naming the fields Moodle did not show this token (stored values kept)."""
    if not counts:
        return
    outcome.details[f"{table}_fields_not_shown"] = dict(sorted(counts.items()))
    parts = []
    for name, n in sorted(counts.items()):
        if table == "courses" and name in ("summary", "summary_format", "moodle_category_id", "currency"):
            continue
        capability = _FIELD_CAPABILITY.get((table, name))
        parts.append(f"{name} of {n}" + (f" ({capability})" if capability else ""))
    if parts:
        outcome.warn(f"{table}: Moodle did not show this token " + ", ".join(parts) + "; the stored values were kept")


def _rows_listed_in_categories(course_rows: list[Any]) -> int:
    return sum(
        1
        for row in course_rows
        if isinstance(row, dict) and not mappers.is_site_course(row) and row.get("id") is not None
    )


def _course_count(category_rows: list[Any]) -> int:
    """Courses the categories hold, hidden ones included (Moodle's stored `coursecount`)."""
    total = 0
    for row in category_rows:
        count = row.get("coursecount") if isinstance(row, dict) else None
        if isinstance(count, int) and not isinstance(count, bool) and count > 0:
            total += count
    return total


def _check_account_can_open_the_site(category_rows: list[Any], course_rows: list[Any]) -> None:
    """No categories while courses sit in categories: Moodle skipped every category because the
    token's account cannot open the site (forced password change, incomplete profile, site
    policy). Its course list is then public-only too: nothing of it may be written."""
    if category_rows:
        return
    in_categories = [
        row
        for row in course_rows
        if isinstance(row, dict) and isinstance(row.get("categoryid"), int) and row["categoryid"] > 0
    ]
    if in_categories:
        raise MoodleAccountStateError(
            f"Moodle listed no categories although {len(in_categories)} courses are in categories: the token's "
            "account cannot open the site (forced password change, incomplete profile or site policy not agreed); "
            "nothing was written",
            wsfunction="core_course_get_categories",
        )


# --- COURSE_CATALOG -------------------------------------------------------------------------


def prepare_access(fetcher: MoodleFetcher, engine: Engine, target: SyncTarget) -> TokenAccess:
    """Who the token is and what it can see, for `target` (site info + the probes its rules need).

    ENROLLMENTS asks the all-groups question in the first catalog courses (one that lets the token
    in answers it)."""
    if target is not SyncTarget.ENROLLMENTS:
        return read_access(fetcher.client, target)
    with transaction(engine) as session:
        courses = upserts.active_courses(session)
    return read_access(fetcher.client, target, probe_course_ids=[moodle_id for _local, moodle_id in courses])


def sync_course_catalog(
    fetcher: MoodleFetcher,
    engine: Engine,
    options: SyncOptions,
    control: SyncControl = NO_CONTROL,
    access: TokenAccess | None = None,
) -> SyncOutcome:
    """Categories and courses. Deactivation rule (docs in README "What lands in the database"):
    a category Moodle no longer lists is deactivated only if the token sees hidden categories; a
    course only if the token sees every course (a site administrator, or hidden categories seen
    and the categories' course counts, which include hidden courses, all accounted for)."""
    access = access or prepare_access(fetcher, engine, SyncTarget.COURSE_CATALOG)
    outcome = SyncOutcome(access=access)
    now = utcnow()
    category_rows = fetcher.categories()
    control.check()
    course_rows = fetcher.courses()
    _check_account_can_open_the_site(category_rows, course_rows)
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
    outcome.counts.skipped = categories.skipped + courses.skipped
    outcome.reject(rejections(categories) + rejections(courses))
    admin = access.identity.is_site_admin
    sees_hidden_categories = admin or access.visibility.hidden_categories is True
    unseen_courses = max(0, _course_count(category_rows) - _rows_listed_in_categories(course_rows))
    sees_every_course = admin or (sees_hidden_categories and unseen_courses == 0)
    guard = _guard(options)
    changes = _change_log(SyncTarget.COURSE_CATALOG, options, control)
    with control.apply(engine) as session:
        _bind_changes(changes, session)
        cat_result = upserts.apply_categories(
            session,
            categories.records,
            now=now,
            guard=guard,
            keep=_listed_ids(categories),
            deactivate=sees_hidden_categories,
            changes=changes,
        )
        course_result, enrollments_closed = upserts.apply_courses(
            session,
            courses.records,
            now=now,
            guard=guard,
            keep=_listed_ids(courses),
            deactivate=sees_every_course,
            changes=changes,
        )
        _log_changes(outcome, changes, session)
    outcome.apply(cat_result)
    outcome.apply(course_result)
    if not sees_hidden_categories and cat_result.kept_unseen:
        outcome.warn(
            f"categories: {cat_result.kept_unseen} stored categories were not listed and were kept active: this "
            "token cannot see hidden categories (moodle/category:viewhiddencategories), so they may only be hidden"
        )
    if not sees_every_course and (unseen_courses or course_result.kept_unseen):
        if unseen_courses:
            why = f"{unseen_courses} courses exist that this token cannot see (hidden: moodle/course:viewhiddencourses)"
        else:
            why = "this token cannot see hidden categories, so it cannot tell whether it sees every course"
        kept = course_result.kept_unseen
        outcome.warn(f"courses: {why}" + (f"; {kept} stored courses not listed were kept active" if kept else ""))
    _warn_withheld(outcome, "categories", withheld_counts(categories.records))
    _warn_withheld(outcome, "courses", withheld_counts(courses.records))
    outcome.details.update(
        categories_fetched=categories.fetched,
        categories_inserted=cat_result.inserted,
        categories_updated=cat_result.updated,
        categories_deactivated=cat_result.deactivated,
        categories_kept_unseen=cat_result.kept_unseen,
        courses_fetched=courses.fetched,
        courses_inserted=course_result.inserted,
        courses_updated=course_result.updated,
        courses_deactivated=course_result.deactivated,
        courses_kept_unseen=course_result.kept_unseen,
        courses_not_visible_to_token=unseen_courses,
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
    fetcher: MoodleFetcher,
    engine: Engine,
    options: SyncOptions,
    control: SyncControl = NO_CONTROL,
    access: TokenAccess | None = None,
) -> SyncOutcome:
    """Users. Deactivation rule: a user whose id Moodle no longer lists is deactivated only if the
    token sees every user (a site administrator, or moodle/user:viewdetails, proven by the guest
    probe): without it Moodle lists only teachers and the token's own account."""
    access = access or prepare_access(fetcher, engine, SyncTarget.USER_DIRECTORY)
    outcome = SyncOutcome(access=access)
    now = utcnow()
    try:
        ids = fetcher.user_ids()
    except MoodleAccessError as exc:
        if exc.errorcode == "nopermissions":
            exc.hint = (
                "listing every user (the site course's participants) needs moodle/course:enrolreview (or "
                "moodle/site:viewparticipants) in the token user's role at system level (docs/moodle-setup.md step 4)"
            )
            exc.args = (exc._render(),)
        raise
    control.check()
    with _user_staging(fetcher, ids, options, control, now) as users:
        outcome.counts.fetched = users.fetched
        outcome.counts.skipped = users.mapped.skipped
        outcome.reject(rejections(users.mapped))
        # A user listed among the participants but not returned by id (deleted in between, or
        # hidden from this token), or whose row was rejected, is not "gone": only ids Moodle no
        # longer lists are deactivated.
        listed = _listed_ids(users.mapped)
        missing = sum(1 for i in ids if i not in users.returned and i not in listed)
        users.returned.clear()
        return _apply_users(outcome, engine, options, control, access, ids, users, missing, now)


def _apply_users(
    outcome: SyncOutcome,
    engine: Engine,
    options: SyncOptions,
    control: SyncControl,
    access: TokenAccess,
    ids: list[int],
    users: _StagedUsers,
    missing: int,
    now: datetime,
) -> SyncOutcome:
    sees_every_user = access.identity.is_site_admin or access.visibility.all_users is True
    changes = _change_log(SyncTarget.USER_DIRECTORY, options, control)
    with control.apply(engine) as session:
        _bind_changes(changes, session)
        result = upserts.apply_users(
            session,
            users,
            now=now,
            guard=_guard(options),
            listed=ids,
            deactivate=sees_every_user,
            changes=changes,
        )
        _log_changes(outcome, changes, session)
    outcome.apply(result)
    if not sees_every_user:
        outcome.warn(
            f"users: Moodle listed {len(ids)} users to this token, which cannot see every user "
            f"(moodle/user:viewdetails: only teachers and its own account are listed); {result.kept_unseen} stored "
            "users not listed were kept active"
        )
    _warn_withheld(outcome, "users", users.withheld)
    outcome.details.update(
        user_ids_listed=len(ids),
        users_missing_by_id=missing,
        guest_skipped=users.mapped.skipped,
        users_kept_unseen=result.kept_unseen,
    )
    return outcome


class _StagedUser(NamedTuple):
    """A staged `UserRecord` read back: the same attributes, built as a tuple (a frozen
    dataclass's __init__ cost 1.5 µs a user, read twice by `apply_users`)."""

    moodle_user_id: int
    email: str | None
    username: str | None
    first_name: str | None
    last_name: str | None
    id_number: str | None
    is_suspended: bool | None
    last_access_at: datetime | None
    is_active: bool
    synced_at: datetime
    withheld: frozenset[str]


if _StagedUser._fields != tuple(mappers.UserRecord.__dataclass_fields__):  # pragma: no cover (a renamed field)
    raise RuntimeError("_StagedUser must list UserRecord's fields in order")


class _StagedUsers:
    """The mapped users of one sync parked on disk (a marshalled `Spool` of compact tuples, one
    list per `_USER_PART` rows fetched; `last_access_at` as integer microseconds since the epoch,
    exact), iterable (as `_StagedUser`s, read like `UserRecord`s) as often as `apply_users`
    needs: only one such list is in memory at a time. Kept whole: the rejections and skips
    (few), the Moodle ids returned (ints) and the withheld-field counts."""

    def __init__(self, synced_at: datetime) -> None:
        self.spool = Spool("moodle-users-", plain=True)
        self.synced_at = synced_at
        self.rejected: list[mappers.Rejection] = []
        self.skipped_rows: list[mappers.Rejection] = []
        self.records = 0
        self.returned: set[int] = set()
        self.withheld: dict[str, int] = {}

    @property
    def mapped(self) -> mappers.MappedBatch:
        """The rejections and skips (records left out: they are on disk)."""
        return mappers.MappedBatch([], self.rejected, len(self.skipped_rows), self.skipped_rows)

    @property
    def fetched(self) -> int:
        return self.records + len(self.rejected) + len(self.skipped_rows)

    def add(self, part: mappers.MappedBatch) -> None:
        self.rejected.extend(part.rejected)
        self.skipped_rows.extend(part.skipped_rows)
        self.records += len(part.records)
        rows = []
        for r in part.records:
            if r.synced_at != self.synced_at:  # pragma: no cover (the mapper stamps every row with one time)
                raise ValueError("staged users must share one synced_at")
            self.returned.add(r.moodle_user_id)
            for name in r.withheld:
                self.withheld[name] = self.withheld.get(name, 0) + 1
            seen = r.last_access_at
            rows.append(
                (
                    r.moodle_user_id,
                    r.email,
                    r.username,
                    r.first_name,
                    r.last_name,
                    r.id_number,
                    r.is_suspended,
                    None if seen is None else (seen - _EPOCH) // _MICROSECOND,
                    r.is_active,
                    r.withheld,
                )
            )
        self.spool.add(rows)

    def ids_and_emails(self) -> Iterator[tuple[int, str | None]]:
        """(Moodle id, e-mail) of every staged user, without building the records (the first of
        `apply_users`'s two reads needs no more)."""
        for batch in self.spool.batches():
            for row in batch:
                yield row[0], row[1]

    def __iter__(self) -> Iterator[_StagedUser]:
        synced_at, user = self.synced_at, _StagedUser
        for batch in self.spool.batches():
            for m, email, username, first, last, id_number, suspended, seen, active, withheld in batch:
                at = None if seen is None else _EPOCH + timedelta(microseconds=seen)
                yield user(m, email, username, first, last, id_number, suspended, at, active, synced_at, withheld)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@contextmanager
def _user_staging(
    fetcher: MoodleFetcher, ids: list[int], options: SyncOptions, control: SyncControl, now: datetime
) -> Iterator[_StagedUsers]:
    """Fetch, map and stage every user: each batch is mapped as it arrives and its raw rows dropped
    (raw rows were ~3 KB/user: 418 MB peak at 100k users), then parked on disk."""
    mapper = mappers.RowMapper(mappers.map_moodle_user_row, synced_at=now)
    staged = _StagedUsers(now)
    try:
        rows = _user_rows(fetcher, ids, options.concurrency, control)
        while part := list(islice(rows, _USER_PART)):
            staged.add(mapper.map(part))
        yield staged
    finally:
        staged.spool.close()


# Fetched user rows mapped and staged at a time.
_USER_PART = 1000


# --- ENROLLMENTS ----------------------------------------------------------------------------


class _Staging:
    """Mapped enrolments parked on disk between the fetch and the write phases: per course one
    `marshal` blob of the compact driver-ready tuples of `upserts.RawValues.stage_enrollment`,
    appended to a temporary file (memory stays flat; no objects rebuilt on the way back). A
    staging SQLite table cost ~20 µs a row (its GIL hand-offs compete with the fetch threads)."""

    def __init__(self, raw: upserts.RawValues) -> None:
        self.raw = raw
        self.file = tempfile.TemporaryFile(prefix="moodle-enrolments-")  # noqa: SIM115 (closed by close())
        self.where: dict[tuple[str, int], tuple[int, int]] = {}
        self.withheld: dict[str, int] = {}

    def _put(self, key: tuple[str, int], value: Any) -> None:
        blob = marshal.dumps(value)
        self.file.seek(0, os.SEEK_END)
        self.where[key] = (self.file.tell(), len(blob))
        self.file.write(blob)

    def _get(self, key: tuple[str, int]) -> Any:
        where = self.where.get(key)
        if where is None:
            return None
        self.file.seek(where[0])
        return marshal.loads(self.file.read(where[1]))

    def add(self, course_id: int, course: FetchedCourse) -> None:
        """Stage a course's rows (already the staged tuples)."""
        for name, n in course.withheld.items():
            self.withheld[name] = self.withheld.get(name, 0) + n
        self._put(("rows", course_id), course.rows)

    def course(self, course_id: int) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] | None = self._get(("rows", course_id))
        return rows or []

    def add_plan(self, course_id: int, plan: upserts.CoursePlan) -> None:
        self._put(("plan", course_id), plan.astuple())

    def plan(self, course_id: int) -> upserts.CoursePlan:
        return upserts.CoursePlan(*self._get(("plan", course_id)))

    def withheld_counts(self) -> dict[str, int]:
        return dict(self.withheld)

    def finish_writes(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()


@contextmanager
def _staging(raw: upserts.RawValues) -> Iterator[_Staging]:
    staging = _Staging(raw)
    try:
        yield staging
    finally:
        staging.close()


def _refused(outcome: SyncOutcome, refused: dict[int, MoodleError], courses: int, options: SyncOptions) -> None:
    """Fail the run (before anything is written) when too many courses refused the token; warn
    when some did. A refused course is a failure of that course's scope: its enrolments stay."""
    if not refused:
        return
    by_fix: dict[str, list[int]] = {}
    for moodle_id, exc in sorted(refused.items()):
        by_fix.setdefault(capability_for(exc), []).append(moodle_id)
    reasons = "; ".join(
        f"{len(ids)} need {fix} (courses {', '.join(map(str, ids[:5]))}{'…' if len(ids) > 5 else ''})"
        for fix, ids in by_fix.items()
    )
    outcome.details["courses_refused_reasons"] = {
        str(k): str(v.errorcode or v.kind) for k, v in list(refused.items())[:20]
    }
    share = len(refused) / courses if courses else 1.0
    if share > options.max_unreadable_course_fraction:
        raise CoursesRefused(
            f"{len(refused)} of {courses} courses refused to show their participants to this token ({reasons}); "
            f"more than the {options.max_unreadable_course_fraction:.0%} allowed "
            "(MOODLE_SYNC_MAX_UNREADABLE_COURSE_FRACTION), so nothing was written",
            hint="give the token's user the named capabilities at system level (docs/moodle-setup.md step 4), then "
            "run `moodle-integration check`",
        )
    outcome.warn(
        f"enrollments: {len(refused)} of {courses} courses refused to show their participants ({reasons}); their "
        "stored enrollments were kept as they were"
    )


def sync_enrollments(
    fetcher: MoodleFetcher,
    engine: Engine,
    options: SyncOptions,
    control: SyncControl = NO_CONTROL,
    access: TokenAccess | None = None,
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> SyncOutcome:
    """Enrollments of every active catalog course. Rules: a course whose participants the token
    may not read is a failure of that course's scope (its enrollments stay; too many such courses
    fail the run, see `_refused`); within a course read in full, an enrollment Moodle no longer
    lists is deactivated only if the token sees every participant (a site administrator, or
    moodle/user:viewdetails and moodle/site:accessallgroups, both proven by probes)."""
    access = access or prepare_access(fetcher, engine, SyncTarget.ENROLLMENTS)
    outcome = SyncOutcome(access=access)
    now = utcnow()
    with transaction(engine) as session:
        courses = upserts.active_courses(session)
    visibility = access.visibility
    sees_every_participant = access.identity.is_site_admin or (
        visibility.all_users is True and visibility.all_groups is True
    )
    refused: dict[int, MoodleError] = {}
    vanished: set[int] = set()
    skipped_deactivation: set[int] = set()
    kept: dict[int, list[int]] = {}
    raw = upserts.RawValues(engine)
    # Each course is diffed against its stored rows as soon as it is fetched (read outside the
    # write transaction), so the CPU work overlaps the requests still in flight; the plans are
    # applied only if nothing wrote enrollments or users meanwhile (else re-diffed in the
    # transaction from the staged rows).
    reader = upserts.StoredReader(engine)
    with _staging(raw) as staging, closing(reader):
        before = reader.fingerprint()
        planned_users = reader.user_ids()
        done = 0
        results = courses_in_threads(fetcher, courses, now, raw, concurrency=options.concurrency, check=control.check)
        with closing(results):  # stops the courses in flight when this loop ends early
            for local_id, moodle_id, got in results:
                if isinstance(got, MoodleMissingRecordError):
                    # Gone since the catalog sync: the next catalog sync deactivates it.
                    vanished.add(moodle_id)
                    continue
                if isinstance(got, MoodleAccountStateError):
                    raise got
                if isinstance(got, MoodleAccessError):
                    refused[moodle_id] = got  # this course's scope failed: keep its enrolments
                    continue
                outcome.counts.fetched += got.fetched
                outcome.reject(got.rejects)
                if any(moodle_user is None for moodle_user, _ in got.rejects):
                    # A rejected row without a readable user id: we cannot tell which
                    # stored enrolment it was, so this course deactivates nothing.
                    skipped_deactivation.add(moodle_id)
                kept[moodle_id] = [m for m, _ in got.rejects if m is not None]
                staging.add(local_id, got)
                keep = list(planned_users) if moodle_id in skipped_deactivation else kept[moodle_id]
                plan = upserts.plan_course_enrollments(
                    reader.course(local_id),
                    got.rows,
                    users=planned_users,
                    keep_moodle_users=keep,
                    raw=raw,
                    course_id=local_id,
                    now=now,
                )
                staging.add_plan(local_id, plan)
                del got, plan
                done += 1
                if on_progress:
                    on_progress(done, len(courses))
        _refused(outcome, refused, len(courses), options)
        staging.finish_writes()
        scope = upserts.EnrollmentScope()
        kept_unseen = 0
        changes = _change_log(SyncTarget.ENROLLMENTS, options, control)
        with control.apply(engine) as session:
            _bind_changes(changes, session)
            planned = upserts.stored_fingerprint(session) == before
            outcome.details["enrollments_diffed_during_fetch"] = planned
            users = planned_users if planned else upserts.user_ids(session)
            writer = upserts.EnrollmentWriter(session, raw)
            for local_id, moodle_id in courses:
                if moodle_id in refused or moodle_id in vanished:
                    continue
                if planned:
                    result = upserts.apply_course_plan(
                        session,
                        local_id,
                        staging.plan(local_id),
                        now=now,
                        scope=scope,
                        deactivate=sees_every_participant,
                        writer=writer,
                        changes=changes,
                    )
                else:
                    keep = kept.get(moodle_id, [])
                    if moodle_id in skipped_deactivation:
                        keep = list(users)  # every stored enrolment of this course stays as it is
                    result = upserts.apply_course_enrollments(
                        session,
                        local_id,
                        staging.course(local_id),
                        users=users,
                        now=now,
                        scope=scope,
                        keep_moodle_users=keep,
                        deactivate=sees_every_participant,
                        writer=writer,
                        changes=changes,
                    )
                kept_unseen += result.kept_unseen
                outcome.apply(result)
            writer.flush()
            outcome.counts.deactivated += upserts.finish_enrollments(
                session, scope, now=now, guard=_guard(options), changes=changes
            )
            outcome.counts.deactivated += upserts.deactivate_enrollments_of_inactive_courses(
                session, now=now, changes=changes
            )
            _log_changes(outcome, changes, session)
        if not sees_every_participant and kept_unseen:
            missing = [
                cap
                for cap, seen in (
                    ("moodle/user:viewdetails", visibility.all_users),
                    ("moodle/site:accessallgroups", visibility.all_groups),
                )
                if seen is not True
            ]
            outcome.warn(
                f"enrollments: {kept_unseen} stored enrollments were not listed and were kept active: this token "
                f"may not see every participant ({' and '.join(missing)} not proven)"
            )
        _warn_withheld(outcome, "enrollments", staging.withheld_counts())
    outcome.details.update(
        courses_synced=len(courses) - len(refused) - len(vanished),
        courses_refused=len(refused),
        courses_gone_since_catalog=len(vanished),
        enrollments_kept_unseen=kept_unseen,
    )
    return outcome


SYNC_FUNCTIONS: dict[SyncTarget, Callable[..., SyncOutcome]] = {
    SyncTarget.COURSE_CATALOG: sync_course_catalog,
    SyncTarget.USER_DIRECTORY: sync_user_directory,
    SyncTarget.ENROLLMENTS: sync_enrollments,
}
