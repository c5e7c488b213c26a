"""Idempotent bulk writes of mapped Moodle records, the same code on SQLite and PostgreSQL.

Each `apply_*` function runs inside the caller's transaction (one per target) and:
- inserts rows new to the store, updates rows whose values changed, and leaves identical rows
  untouched: a re-sync with nothing changed in Moodle writes nothing at all (`synced_at` is
  the time a sync last *wrote* the row, not the time it was last seen);
- never overwrites a stored value with a field Moodle left out: a record's `withheld` fields
  (not shown to this token) are neither compared nor written, and are NULL only on insert;
- marks rows that disappeared from Moodle `is_active = false` (never deletes), only within the
  scope the caller says was fetched completely, and only when the caller says the token could
  have seen them (`deactivate=False` keeps them and counts them in `kept_unseen`);
- tells the sync's `ChangeLog` (when given; see changelog.py) each row it inserts, updates,
  deactivates or reactivates, from the comparison it makes anyway: no extra per-row query;
- refuses, through `DeactivationGuard`, to deactivate more than a set share of the active
  rows in one run, so a Moodle permission glitch that returns empty lists cannot wipe a table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any

from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.orm import Session

from . import changelog as cl
from .changelog import ChangeLog
from .db import rowcount
from .models import CourseCatalog, CourseCategory, User, UserCourseEnrollment
from .raw import RawValues, insert_raw
from .spool import Spool

CATEGORY_FIELDS = ("name", "parent_moodle_category_id", "path", "depth", "sort_order", "is_visible")
COURSE_FIELDS = (
    "category_id",
    "moodle_category_id",
    "shortname",
    "fullname",
    "summary",
    "summary_format",
    "id_number",
    "is_visible",
    "start_at",
    "end_at",
    "price",
    "currency",
)
USER_FIELDS = ("email", "username", "first_name", "last_name", "id_number", "is_suspended", "last_access_at")
ENROLLMENT_FIELDS = ("moodle_user_id", "moodle_course_id", "is_active", "roles", "last_access_at")

# SQLite allows 32766 bound parameters per statement; stay well below with IN lists.
IN_CHUNK = 900
# Rows per executemany where the parameter dicts are built lazily (bounded memory, few statements).
INSERT_CHUNK = 5000
# Users compared per batch (one lookup of their Moodle ids and e-mails): memory flat in users.
USER_BATCH = 5000


class MassDeactivationRefused(RuntimeError):
    """Too many active rows would be deactivated at once; nothing was written."""


@dataclass(frozen=True)
class DeactivationGuard:
    """Refuse to deactivate more than `max_fraction` of a table's active rows in one run.

    Small tables get slack: up to `min_rows` deactivations always pass (removing 2 of 6
    courses is a normal day, not a glitch).
    """

    max_fraction: float = 0.25
    min_rows: int = 10
    setting_name: str = "MOODLE_SYNC_MAX_DEACTIVATE_FRACTION"

    def check(self, label: str, to_deactivate: int, active: int) -> None:
        if to_deactivate <= self.min_rows or active == 0:
            return
        if to_deactivate / active > self.max_fraction:
            raise MassDeactivationRefused(
                f"refusing to mark {to_deactivate} of {active} active {label} inactive in one run "
                f"({to_deactivate / active:.0%} > the {self.max_fraction:.0%} limit); nothing was written. "
                f"If Moodle really removed them, set {self.setting_name} higher for one run; if not, check the "
                "token's permissions (a missing capability makes Moodle return empty lists)."
            )


@dataclass
class ApplyResult:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deactivated: int = 0
    rejected: list[tuple[int | None, str]] = field(default_factory=list)
    unmatched: int = 0
    # Active rows Moodle did not list, kept active because the token could not have seen them.
    kept_unseen: int = 0
    # Local id -> Moodle key of the rows found gone (filled only when changes are logged).
    gone_keys: dict[int, Any] = field(default_factory=dict)

    def add(self, other: ApplyResult) -> ApplyResult:
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.deactivated += other.deactivated
        self.rejected.extend(other.rejected)
        self.unmatched += other.unmatched
        self.kept_unseen += other.kept_unseen
        return self


def known_values(record: Any, fields: Sequence[str]) -> dict[str, Any]:
    """The record's values for `fields`, without those Moodle did not show (its `withheld` set)."""
    withheld = getattr(record, "withheld", ())
    return {f: getattr(record, f) for f in fields if f not in withheld}


def _chunks(items: Sequence[Any], size: int = IN_CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _insert_rows(session: Session, model: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    """Bulk INSERT as Core ``executemany`` statements, one per set of keys.

    Not the ORM's ``session.execute(insert(model), rows)``: the ORM leaves ``None`` values out
    of each row's parameters and then batches only *consecutive rows with the same non-None
    keys*, so rows alternating e.g. ``last_access_at`` None / set went out ~2 per statement
    (60,000 INSERTs for 120,000 rows at scale M: 47 s on PostgreSQL). Core sends NULLs as
    values, so a whole course or user list is one executemany.
    """
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)
    for group in groups.values():
        session.execute(model.__table__.insert(), group)


def _update_rows(session: Session, model: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    """Bulk UPDATE by primary key, one statement per set of columns (rows that leave withheld
    fields out have fewer)."""
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(sorted(row)), []).append(row)
    for group in groups.values():
        session.execute(update(model), group)


def _same(old: Any, new: Any) -> bool:
    # Decimal('49.9000') == Decimal('49.90'); aware datetimes compare by instant.
    return old == new and (old is None) == (new is None)


def _diff_keyed(
    session: Session,
    model: Any,
    key_name: str,
    fields: Sequence[str],
    desired: Mapping[Any, Mapping[str, Any]],
    *,
    scope: Any = None,
    now: datetime,
    insert_extra: Mapping[str, Any] | None = None,
    keep: Iterable[Any] | None = None,
    changes: ChangeLog | None = None,
    entity: str = "",
    key_of: Callable[[Mapping[str, Any]], Any] | None = None,
) -> tuple[ApplyResult, list[int], int]:
    """Insert/update `desired` (key -> column values) against the rows in `scope`.

    A field missing from a key's values was not shown to the token: it is left out of the
    comparison and of the UPDATE (the stored value stays), and is NULL on INSERT.

    Returns the result, the ids of active rows in scope that Moodle no longer has (not yet
    deactivated: the caller applies the guard first), and the number of active rows in scope.
    Keys in `keep` (rows Moodle still lists but that were rejected as malformed) are never
    counted as gone: a bad row leaves the stored one as it was.

    With `changes`, every insert and update is logged as `entity`, keyed by `key_of(values)`
    (default: the key), and the Moodle keys of the `gone` rows are kept in `result.gone_keys`
    for the caller's deactivation to log.
    """
    keep_keys = set(keep or ())
    key_col = getattr(model, key_name)
    columns = [model.id, key_col, model.is_active] + [getattr(model, f) for f in fields]
    query = select(*columns)
    if scope is not None:
        query = query.where(scope)
    existing: dict[Any, tuple] = {row[1]: tuple(row) for row in session.execute(query)}
    result = ApplyResult()
    label = key_of or (lambda values: values[key_name])

    def stored(row: tuple) -> dict[str, Any]:
        return {key_name: row[1], **{f: row[3 + i] for i, f in enumerate(fields)}}

    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for key, values in desired.items():
        row = existing.get(key)
        if row is None:
            record = {key_name: key, **dict.fromkeys(fields), **values}
            record.update(is_active=values.get("is_active", True), synced_at=now)
            if insert_extra:
                record.update(insert_extra)
            inserts.append(record)
            if changes is not None:
                changes.add(entity, label(record), cl.INSERTED)
            continue
        wanted_active = values.get("is_active", True)
        known = [(i, f) for i, f in enumerate(fields) if f in values]
        changed = row[2] != wanted_active or any(not _same(row[3 + i], values[f]) for i, f in known)
        if changed:
            updates.append(
                {"id": row[0], **{f: values[f] for _, f in known}, "is_active": wanted_active, "synced_at": now}
            )
            if changes is not None:
                columns = [f for i, f in known if not _same(row[3 + i], values[f])]
                changes.add(entity, label(stored(row)), cl.kind_of(bool(row[2]), bool(wanted_active)), columns)
        else:
            result.unchanged += 1
    if inserts:
        _insert_rows(session, model, inserts)
    _update_rows(session, model, updates)
    result.inserted = len(inserts)
    result.updated = len(updates)
    active_in_scope = sum(1 for row in existing.values() if row[2])
    gone = [row[0] for key, row in existing.items() if row[2] and key not in desired and key not in keep_keys]
    if changes is not None and gone:
        gone_ids = set(gone)
        result.gone_keys = {row[0]: label(stored(row)) for row in existing.values() if row[0] in gone_ids}
    return result, gone, active_in_scope


def _deactivate(
    session: Session,
    model: Any,
    ids: Sequence[int],
    now: datetime,
    changes: ChangeLog | None = None,
    entity: str = "",
    keys: Mapping[int, Any] | None = None,
) -> int:
    for chunk in _chunks(list(ids)):
        session.execute(update(model).where(model.id.in_(chunk)).values(is_active=False, synced_at=now))
    if changes is not None and keys is not None:
        changes.add_many(entity, (keys[i] for i in ids), cl.DEACTIVATED)
    return len(ids)


# --- categories -----------------------------------------------------------------------------


def _deactivate_or_keep(
    session: Session,
    model: Any,
    label: str,
    result: ApplyResult,
    gone: Sequence[int],
    active: int,
    *,
    now: datetime,
    guard: DeactivationGuard,
    deactivate: bool,
    changes: ChangeLog | None = None,
    entity: str = "",
) -> list[int]:
    """Deactivate `gone` (after the guard), or, when the token could not have seen them, keep
    them and count them. Returns the ids deactivated."""
    if not deactivate:
        result.kept_unseen = len(gone)
        return []
    guard.check(label, len(gone), active)
    result.deactivated = _deactivate(session, model, gone, now, changes, entity, result.gone_keys)
    return list(gone)


def apply_categories(
    session: Session,
    records: Sequence[Any],
    *,
    now: datetime,
    guard: DeactivationGuard,
    keep: Iterable[int] = (),
    deactivate: bool = True,
    changes: ChangeLog | None = None,
) -> ApplyResult:
    """Upsert categories; deactivate those Moodle no longer lists, if `deactivate` (the token
    sees hidden categories: otherwise a missing one may only have been hidden)."""
    desired = {r.moodle_category_id: known_values(r, CATEGORY_FIELDS) for r in records}
    result, gone, active = _diff_keyed(
        session,
        CourseCategory,
        "moodle_category_id",
        CATEGORY_FIELDS,
        desired,
        now=now,
        keep=keep,
        changes=changes,
        entity=cl.CATEGORY,
    )
    _deactivate_or_keep(
        session,
        CourseCategory,
        "categories",
        result,
        gone,
        active,
        now=now,
        guard=guard,
        deactivate=deactivate,
        changes=changes,
        entity=cl.CATEGORY,
    )
    return result


def category_ids(session: Session) -> dict[int, int]:
    return dict(session.execute(select(CourseCategory.moodle_category_id, CourseCategory.id)).all())


# --- courses --------------------------------------------------------------------------------


def apply_courses(
    session: Session,
    records: Sequence[Any],
    *,
    now: datetime,
    guard: DeactivationGuard,
    keep: Iterable[int] = (),
    deactivate: bool = True,
    changes: ChangeLog | None = None,
) -> tuple[ApplyResult, int]:
    """Upsert courses; deactivate courses gone from Moodle and their enrollments, if
    `deactivate` (the token demonstrably sees every course, hidden ones included).

    Returns the result and the number of enrollments deactivated with their course.
    """
    categories = category_ids(session)
    desired: dict[int, dict[str, Any]] = {}
    for r in records:
        values = known_values(r, [f for f in COURSE_FIELDS if f != "category_id"])
        if "moodle_category_id" in values:
            values["category_id"] = categories.get(r.moodle_category_id) if r.moodle_category_id is not None else None
        desired[r.moodle_course_id] = values
    result, gone, active = _diff_keyed(
        session,
        CourseCatalog,
        "moodle_course_id",
        COURSE_FIELDS,
        desired,
        now=now,
        keep=keep,
        changes=changes,
        entity=cl.COURSE,
    )
    closed = _deactivate_or_keep(
        session,
        CourseCatalog,
        "courses",
        result,
        gone,
        active,
        now=now,
        guard=guard,
        deactivate=deactivate,
        changes=changes,
        entity=cl.COURSE,
    )
    enrollments_closed = deactivate_enrollments_of_courses(session, closed, now=now, changes=changes)
    return result, enrollments_closed


def deactivate_enrollments_of_courses(
    session: Session, course_ids: Sequence[int], *, now: datetime, changes: ChangeLog | None = None
) -> int:
    if changes is not None:
        return _deactivate_enrollments_logged(
            session, [UserCourseEnrollment.course_id.in_(chunk) for chunk in _chunks(list(course_ids))], now, changes
        )
    closed = 0
    for chunk in _chunks(list(course_ids)):
        closed += rowcount(
            session.execute(
                update(UserCourseEnrollment)
                .where(UserCourseEnrollment.course_id.in_(chunk), UserCourseEnrollment.is_active.is_(True))
                .values(is_active=False, synced_at=now)
            )
        )
    return closed


# --- users ----------------------------------------------------------------------------------


# Driver-level reads of plain ints and text (no per-row type processing, no IN-list compiling).
_ACTIVE_USERS_SQL = "SELECT id, moodle_user_id, is_active FROM users WHERE moodle_user_id IS NOT NULL"
# Keys per lookup statement (SQLite allows 32766 bound parameters; two lists of this many fit).
USER_LOOKUP = 5000


def _one_of(raw: RawValues, column: str, values: Sequence[Any]) -> tuple[str, tuple[Any, ...]]:
    """`column` is one of `values`: an IN list on SQLite, `= ANY(array)` (one parameter, cheap
    to parse) on PostgreSQL."""
    if raw.sqlite:
        return f"{column} IN ({', '.join('?' * len(values))})", tuple(values)
    return f"{column} = ANY(%s)", (list(values),)


def _driver_rows(session: Session, sql: str, params: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The rows of `sql` as the driver returns them, in the session's transaction."""
    cursor = session.connection().connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(INSERT_CHUNK):
            yield from rows
    finally:
        cursor.close()


_STORED_USER_COLUMNS = ("id", "moodle_user_id", "email", "is_active", *USER_FIELDS[1:])


def _stored_users(session: Session, raw: RawValues, column: str, keys: Sequence[Any]) -> Iterator[dict[str, Any]]:
    """The stored users whose `column` is one of `keys`, as column -> typed value (what the ORM
    types would give: bools, aware UTC datetimes), read at driver level: SQLAlchemy's compiling
    of IN lists of bound parameters cost more than the queries."""
    names = ", ".join(_STORED_USER_COLUMNS)
    for chunk in _chunks(keys, USER_LOOKUP):
        where, params = _one_of(raw, column, chunk)
        for row in _driver_rows(session, f"SELECT {names} FROM users WHERE {where}", params):
            user = dict(zip(_STORED_USER_COLUMNS, row, strict=True))
            user["is_active"] = bool(user["is_active"])
            if user["is_suspended"] is not None:
                user["is_suspended"] = bool(user["is_suspended"])
            user["last_access_at"] = raw.stored_ts(user["last_access_at"])
            yield user


def _in_batches(records: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(records)
    while batch := list(islice(it, size)):
        yield batch


def apply_users(
    session: Session,
    records: Iterable[Any],
    *,
    now: datetime,
    guard: DeactivationGuard,
    listed: Iterable[int] | None = None,
    deactivate: bool = True,
    changes: ChangeLog | None = None,
    batch_size: int = USER_BATCH,
) -> ApplyResult:
    """Upsert users keyed on the Moodle id; link a local user by email; never merge two Moodle ids.

    - A local row with the Moodle id is updated (a changed email follows it).
    - Else a local row with the same email and no Moodle id is linked (gets the Moodle id).
    - Else a new row is inserted.
    - An email that belongs to another Moodle id (locally, and not being released in this
      sync) rejects the row with that reason.
    - A user is deactivated only when Moodle no longer lists its id (`listed`): a row that was
      rejected, or not returned by id, keeps its stored values; and only if `deactivate` (the
      token sees every user: without moodle/user:viewdetails Moodle lists only teachers).
    - A field Moodle did not show (the record's `withheld`) keeps its stored value.

    Memory stays flat in the number of users: `records` (a list, or any iterable that can be
    iterated twice, such as the engine's on-disk staging) is read `batch_size` at a time, each
    batch compared with the stored rows of its Moodle ids and e-mails only, and the writes are
    parked in a `Spool` until every row has been compared (the old e-mails of users changing
    them must be freed before any row takes one). What is held for the whole population is
    ints: the ids seen, and the hashes of the incoming e-mails while they are checked for
    repeats.
    """
    if iter(records) is records:
        raise TypeError("apply_users reads `records` twice: pass a list or another re-iterable collection")
    # Pass 1: the ids seen; the Moodle users whose stored e-mail this sync changes (theirs is
    # free to be taken by another user in the same sync); the e-mails more than one incoming
    # record carries (by hash: only those need the exact "claimed" bookkeeping below).
    raw = RawValues(session)
    seen: set[int] = set(listed or ())
    releasing: set[int] = set()
    hashes: set[int] = set()
    shared: set[int] = set()
    keys = getattr(records, "ids_and_emails", None)  # cheaper than records (the engine's staging)
    pairs = keys() if callable(keys) else ((r.moodle_user_id, r.email) for r in records)
    for batch in _in_batches(pairs, batch_size):
        incoming: dict[int, str | None] = {}
        for moodle_id, email in batch:
            seen.add(moodle_id)
            incoming[moodle_id] = email
            if email is not None:
                h = hash(email)
                if h in hashes:
                    shared.add(h)
                else:
                    hashes.add(h)
        for chunk in _chunks(list(incoming), USER_LOOKUP):
            where, params = _one_of(raw, "moodle_user_id", chunk)
            for moodle_id, email in _driver_rows(
                session, f"SELECT moodle_user_id, email FROM users WHERE {where}", params
            ):
                if email is not None and incoming[moodle_id] != email:
                    releasing.add(moodle_id)
    del hashes

    # Pass 2: compare batch by batch; park the writes.
    result = ApplyResult()
    now_raw, active_raw = raw.ts(now), raw.flag(True)
    email_changes: list[int] = []
    claimed: dict[str, int] = {}  # e-mails in `shared` only
    linked: dict[int, Any] = {}  # Moodle id -> the local row this sync linked it to
    updated = inserted = 0
    with Spool("moodle-user-updates-") as update_spool, Spool("moodle-user-inserts-", plain=True) as insert_spool:
        for batch in _in_batches(records, batch_size):
            ids = [r.moodle_user_id for r in batch]
            by_moodle = {user["moodle_user_id"]: user for user in _stored_users(session, raw, "moodle_user_id", ids)}
            # Only e-mails not already the stored e-mail of their own Moodle id can be held by
            # another row (e-mails are unique): a re-sync with nothing changed looks up none.
            emails = {
                r.email
                for r in batch
                if r.email is not None
                and (r.moodle_user_id not in by_moodle or by_moodle[r.moodle_user_id]["email"] != r.email)
            }
            by_email = {user["email"]: user for user in _stored_users(session, raw, "email", list(emails))}
            updates: list[dict[str, Any]] = []
            inserts: list[tuple[Any, ...]] = []
            for r in batch:
                values = known_values(r, USER_FIELDS)
                current = linked.get(r.moodle_user_id) or by_moodle.get(r.moodle_user_id)
                if r.email is not None:
                    tracked = hash(r.email) in shared
                    holder = by_email.get(r.email)
                    owner = claimed.get(r.email) if tracked else None
                    if owner is not None and owner != r.moodle_user_id:
                        result.rejected.append(
                            (r.moodle_user_id, f"email {r.email} is also used by Moodle user {owner}")
                        )
                        continue
                    if holder is not None and (current is None or holder["id"] != current["id"]):
                        holder_moodle = holder["moodle_user_id"]
                        if holder_moodle is not None and holder_moodle not in releasing:
                            result.rejected.append(
                                (
                                    r.moodle_user_id,
                                    f"email {r.email} is already linked to Moodle user {holder_moodle}; not merged",
                                )
                            )
                            continue
                        if current is None and holder_moodle is None:
                            # Link the existing local user to this Moodle account.
                            if changes is not None:
                                old = holder
                                columns = ["moodle_user_id"] + [f for f, v in values.items() if not _same(old[f], v)]
                                changes.add(cl.USER, r.moodle_user_id, cl.kind_of(old["is_active"], True), columns)
                            updates.append(
                                {
                                    "id": holder["id"],
                                    "moodle_user_id": r.moodle_user_id,
                                    **values,
                                    "is_active": True,
                                    "synced_at": now,
                                }
                            )
                            if tracked:
                                claimed[r.email] = r.moodle_user_id
                            linked[r.moodle_user_id] = holder
                            continue
                        if current is not None and holder_moodle is None:
                            result.rejected.append(
                                (
                                    r.moodle_user_id,
                                    f"email {r.email} belongs to another local user (id {holder['id']}); not merged",
                                )
                            )
                            continue
                    if tracked:
                        claimed[r.email] = r.moodle_user_id
                if current is None:
                    inserts.append(
                        (
                            r.moodle_user_id,
                            r.email,
                            r.username,
                            r.first_name,
                            r.last_name,
                            r.id_number,
                            None if r.is_suspended is None else raw.flag(r.is_suspended),
                            raw.ts(r.last_access_at),
                            active_raw,
                            now_raw,
                        )
                    )
                    continue
                old = current
                changed = not old["is_active"] or any(not _same(old[f], v) for f, v in values.items())
                if changed:
                    if "email" in values and old["email"] != values["email"]:
                        email_changes.append(current["id"])
                    if changes is not None:
                        columns = [f for f, v in values.items() if not _same(old[f], v)]
                        changes.add(cl.USER, r.moodle_user_id, cl.kind_of(old["is_active"], True), columns)
                    updates.append({"id": current["id"], **values, "is_active": True, "synced_at": now})
                else:
                    result.unchanged += 1
            update_spool.add(updates)
            insert_spool.add(inserts)
            updated += len(updates)
            inserted += len(inserts)

        # Stored active users Moodle no longer lists, read as a stream of (id, Moodle id, active).
        gone_keys: dict[int, int] = {}
        gone_count = active = 0
        for row_id, moodle_id, is_active in _driver_rows(session, _ACTIVE_USERS_SQL):
            if not is_active:
                continue
            active += 1
            if moodle_id not in seen:
                gone_count += 1
                if deactivate:
                    gone_keys[row_id] = moodle_id
        del seen
        if deactivate:
            guard.check("users", gone_count, active)
        else:
            result.kept_unseen = gone_count
        # Free the old emails first so swaps within one sync do not trip the unique constraint.
        for chunk in _chunks(email_changes):
            session.execute(update(User).where(User.id.in_(chunk)).values(email=None))
        for updates in update_spool.batches():
            _update_rows(session, User, updates)
        insert_columns = ("moodle_user_id", *USER_FIELDS, "is_active", "synced_at")
        for inserts in insert_spool.batches():
            insert_raw(session, "users", insert_columns, inserts)
            if changes is not None:
                changes.add_many(cl.USER, (row[0] for row in inserts), cl.INSERTED)
    result.inserted = inserted
    result.updated = updated
    result.deactivated = _deactivate(session, User, list(gone_keys), now, changes, cl.USER, gone_keys)
    return result


_USER_IDS_SQL = "SELECT moodle_user_id, id FROM users WHERE moodle_user_id IS NOT NULL"


def user_ids(session: Session) -> dict[int, int]:
    rows = session.execute(text(_USER_IDS_SQL))
    return dict(iter(rows.tuples()))  # iter(): a Result has keys(), dict() would take it for a mapping


# --- enrollments ----------------------------------------------------------------------------


@dataclass
class EnrollmentScope:
    """Counts for the whole enrollments target, so the guard sees the run as a whole."""

    gone_ids: list[int] = field(default_factory=list)
    active_before: int = 0
    gone_keys: dict[int, Any] = field(default_factory=dict)


# One course's stored enrollments, in the tuple order `plan_course_enrollments` reads; `{}` is
# the parameter marker: `:course_id` in the write transaction, the driver's in `StoredReader`.
_ENROLLMENT_STORED_SQL = (
    "SELECT id, user_id, is_active, moodle_user_id, moodle_course_id, roles, last_access_at"
    " FROM user_course_enrollment WHERE course_id = {}"
)
_ENROLLMENT_STORED = text(_ENROLLMENT_STORED_SQL.format(":course_id"))
_ENROLLMENT_INSERT_COLUMNS = (
    "user_id",
    "course_id",
    "moodle_user_id",
    "moodle_course_id",
    "is_active",
    "roles",
    "last_access_at",
    "first_seen_at",
    "synced_at",
)


@dataclass
class EnrollmentWriter:
    """Buffers one target's enrollment INSERTs across courses into few large statements."""

    session: Session
    raw: RawValues
    pending: list[tuple[Any, ...]] = field(default_factory=list)

    def extend(self, rows: list[tuple[Any, ...]]) -> None:
        self.pending.extend(rows)
        if len(self.pending) >= INSERT_CHUNK:
            self.flush()

    def flush(self) -> None:
        insert_raw(self.session, "user_course_enrollment", _ENROLLMENT_INSERT_COLUMNS, self.pending)
        self.pending = []


@dataclass
class CoursePlan:
    """What one course's enrollment snapshot changes in the store, computed from stored rows read
    outside the write transaction (during the fetch) and applied later by `apply_course_plan`.
    Plain lists and ints (`astuple` is marshal-able, for on-disk staging)."""

    # Rows to insert, driver-ready in `_ENROLLMENT_INSERT_COLUMNS` order (built here, outside
    # the write transaction, so applying them is one executemany / COPY).
    inserts: list[tuple[Any, ...]]
    inserted_keys: list[str]  # their change-log keys, in the same order
    # (id, moodle user, moodle course, is_active, roles, stamp, withheld, was active, changed columns)
    updates: list[tuple[Any, ...]]
    gone: list[tuple[int, Any, Any]]  # active rows Moodle no longer lists: (id, moodle course, moodle user)
    active_in_scope: int
    unchanged: int
    unmatched: int

    def astuple(self) -> tuple[Any, ...]:
        return (
            self.inserts,
            self.inserted_keys,
            self.updates,
            self.gone,
            self.active_in_scope,
            self.unchanged,
            self.unmatched,
        )


def plan_course_enrollments(
    stored: Iterable[Sequence[Any]],
    staged: Iterable[tuple[Any, ...]],
    *,
    users: Mapping[int, int],
    keep_moodle_users: Iterable[int] = (),
    raw: RawValues,
    course_id: int,
    now: datetime,
) -> CoursePlan:
    """Diff one course's staged snapshot (`RawValues.stage_enrollment` tuples) against its stored
    rows (`_ENROLLMENT_STORED` tuples), all as plain driver values: no per-row type processing.

    `keep_moodle_users`: users whose rows were rejected in this course; their stored enrollment
    is never counted as gone."""
    existing = {row[1]: row for row in stored}
    keep = {users[m] for m in keep_moodle_users if m in users}
    desired: dict[int, tuple[Any, ...]] = {}
    unmatched = 0
    for row in staged:
        user_id = users.get(row[0])
        if user_id is None:
            unmatched += 1
            continue
        desired[user_id] = row  # a user listed twice: the last row wins
    inserts: list[tuple[Any, ...]] = []
    inserted_keys: list[str] = []
    updates: list[tuple[Any, ...]] = []
    unchanged = 0
    now_raw = raw.ts(now)
    stamp_param = raw.stamp_param
    for user_id, (moodle_user, moodle_course, active, roles, stamp, withheld) in desired.items():
        old = existing.get(user_id)
        if old is None:
            if withheld and "roles" in withheld.split(","):
                roles = None
            inserts.append(
                (user_id, course_id, moodle_user, moodle_course, active, roles, stamp_param(stamp), now_raw, now_raw)
            )
            inserted_keys.append(cl.enrollment_key(moodle_course, moodle_user))
            continue
        hidden = withheld.split(",") if withheld else ()
        if (
            old[2] != active
            or old[3] != moodle_user
            or old[4] != moodle_course
            or ("roles" not in hidden and not _same(old[5], roles))
            or ("last_access_at" not in hidden and not _same(raw.stored_stamp(old[6]), stamp))
        ):
            columns = [
                name
                for name, differs in (
                    ("moodle_user_id", old[3] != moodle_user),
                    ("moodle_course_id", old[4] != moodle_course),
                    ("roles", not _same(old[5], roles)),
                    ("last_access_at", not _same(raw.stored_stamp(old[6]), stamp)),
                )
                if differs and name not in hidden
            ]
            updates.append(
                (old[0], moodle_user, moodle_course, active, roles, stamp, withheld, bool(old[2]), ",".join(columns))
            )
        else:
            unchanged += 1
    gone = [
        (old[0], old[4], old[3])
        for user_id, old in existing.items()
        if old[2] and user_id not in desired and user_id not in keep
    ]
    active_in_scope = sum(1 for old in existing.values() if old[2])
    return CoursePlan(inserts, inserted_keys, updates, gone, active_in_scope, unchanged, unmatched)


def apply_course_plan(
    session: Session,
    course_id: int,
    plan: CoursePlan,
    *,
    now: datetime,
    scope: EnrollmentScope,
    deactivate: bool = True,
    writer: EnrollmentWriter,
    changes: ChangeLog | None = None,
) -> ApplyResult:
    """Write one course's plan in the caller's transaction (inserts through `writer`, flushed by
    the caller); collect (not yet apply) what disappeared, or count it as kept when the token
    could not see every participant (`deactivate=False`). With `changes`, each insert and update
    is logged, and the keys of the gone rows are kept for `finish_enrollments` to log."""
    raw = writer.raw
    if changes is not None:
        changes.add_many(cl.ENROLLMENT, plan.inserted_keys, cl.INSERTED)
        for _id, moodle_user, moodle_course, active, _r, _s, _w, was_active, columns in plan.updates:
            key = cl.enrollment_key(moodle_course, moodle_user)
            changes.add(cl.ENROLLMENT, key, cl.kind_of(was_active, bool(active)), columns.split(",") if columns else ())
    writer.extend(plan.inserts)
    updates: list[dict[str, Any]] = []
    for row_id, moodle_user, moodle_course, active, roles, stamp, withheld, _was, _cols in plan.updates:
        values: dict[str, Any] = {
            "moodle_user_id": moodle_user,
            "moodle_course_id": moodle_course,
            "roles": roles,
            "last_access_at": raw.stamp_value(stamp),
        }
        for name in withheld.split(",") if withheld else ():
            values.pop(name, None)
        updates.append({"id": row_id, **values, "is_active": bool(active), "synced_at": now})
    _update_rows(session, UserCourseEnrollment, updates)
    result = ApplyResult(
        inserted=len(plan.inserts), updated=len(updates), unchanged=plan.unchanged, unmatched=plan.unmatched
    )
    if deactivate:
        scope.gone_ids.extend(row_id for row_id, _course, _user in plan.gone)
        if changes is not None:
            scope.gone_keys.update((row_id, cl.enrollment_key(course, user)) for row_id, course, user in plan.gone)
        scope.active_before += plan.active_in_scope
    else:
        result.kept_unseen = len(plan.gone)
    return result


def apply_course_enrollments(
    session: Session,
    course_id: int,
    staged: Iterable[tuple[Any, ...]],
    *,
    users: Mapping[int, int],
    now: datetime,
    scope: EnrollmentScope,
    keep_moodle_users: Iterable[int] = (),
    deactivate: bool = True,
    writer: EnrollmentWriter | None = None,
    changes: ChangeLog | None = None,
) -> ApplyResult:
    """Upsert one course's enrollment snapshot inside the transaction: read its stored rows,
    plan, apply (`plan_course_enrollments`, `apply_course_plan`). Without a `writer` the new rows
    are written before returning."""
    own_writer = writer is None
    writer = writer or EnrollmentWriter(session, RawValues(session))
    stored = session.execute(_ENROLLMENT_STORED, {"course_id": course_id})
    plan = plan_course_enrollments(
        stored, staged, users=users, keep_moodle_users=keep_moodle_users, raw=writer.raw, course_id=course_id, now=now
    )
    result = apply_course_plan(
        session, course_id, plan, now=now, scope=scope, deactivate=deactivate, writer=writer, changes=changes
    )
    if own_writer:
        writer.flush()
    return result


class StoredReader:
    """Reads stored enrollments and users *outside* the write transaction, while the fetch runs.

    A raw driver connection in autocommit: on SQLite no BEGIN IMMEDIATE, so no write lock is
    taken; on PostgreSQL no snapshot is held across the fetch.
    `fingerprint` tells whether anything wrote enrollments or users since: the plans made from
    these reads are applied only if it is unchanged inside the write transaction."""

    def __init__(self, engine: Engine):
        self.sqlite = engine.dialect.name == "sqlite"
        self.connection = engine.raw_connection()
        if not self.sqlite:
            self.connection.driver_connection.autocommit = True  # type: ignore[union-attr]
        self.course_sql = _ENROLLMENT_STORED_SQL.format("?" if self.sqlite else "%s")

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql, params)
            return list(cursor.fetchall())
        finally:
            cursor.close()

    def course(self, course_id: int) -> list[Any]:
        return self._rows(self.course_sql, (course_id,))

    def user_ids(self) -> dict[int, int]:
        cursor = self.connection.cursor()
        try:
            cursor.execute(_USER_IDS_SQL)
            return dict(iter(cursor.fetchone, None))  # row by row: no whole fetchall list held
        finally:
            cursor.close()

    def fingerprint(self) -> tuple[Any, ...]:
        return tuple(self._rows(_FINGERPRINT_SQL)[0])

    def close(self) -> None:
        if not self.sqlite:
            self.connection.driver_connection.autocommit = False  # type: ignore[union-attr]
        self.connection.close()


# Every write to these tables changes a count, a max id or a max synced_at (every write sets
# synced_at = now), or the number of active rows.
_FINGERPRINT_SQL = (
    "SELECT (SELECT COUNT(*) FROM user_course_enrollment), (SELECT MAX(id) FROM user_course_enrollment),"
    " (SELECT MAX(synced_at) FROM user_course_enrollment),"
    " (SELECT COUNT(*) FROM user_course_enrollment WHERE is_active = TRUE),"
    " (SELECT COUNT(*) FROM users), (SELECT MAX(id) FROM users), (SELECT MAX(synced_at) FROM users),"
    " (SELECT COUNT(*) FROM users WHERE moodle_user_id IS NOT NULL)"
)


def stored_fingerprint(session: Session) -> tuple[Any, ...]:
    """`StoredReader.fingerprint`, read in the caller's (write) transaction."""
    return tuple(session.execute(text(_FINGERPRINT_SQL)).one())


def finish_enrollments(
    session: Session,
    scope: EnrollmentScope,
    *,
    now: datetime,
    guard: DeactivationGuard,
    changes: ChangeLog | None = None,
) -> int:
    guard.check("enrollments", len(scope.gone_ids), scope.active_before)
    return _deactivate(session, UserCourseEnrollment, scope.gone_ids, now, changes, cl.ENROLLMENT, scope.gone_keys)


def active_courses(session: Session) -> list[tuple[int, int]]:
    """(local id, Moodle id) of the active catalog courses, in Moodle id order."""
    return [
        (row.id, row.moodle_course_id)
        for row in session.execute(
            select(CourseCatalog.id, CourseCatalog.moodle_course_id)
            .where(CourseCatalog.is_active.is_(True))
            .order_by(CourseCatalog.moodle_course_id)
        )
    ]


def _deactivate_enrollments_logged(
    session: Session, conditions: Sequence[Any], now: datetime, changes: ChangeLog
) -> int:
    """Deactivate the active enrollments matching each condition, logging each one: one read of
    their keys per condition, then UPDATEs by id."""
    keys: dict[int, str] = {}
    for condition in conditions:
        for row in session.execute(
            select(
                UserCourseEnrollment.id, UserCourseEnrollment.moodle_course_id, UserCourseEnrollment.moodle_user_id
            ).where(condition, UserCourseEnrollment.is_active.is_(True))
        ):
            keys[row.id] = cl.enrollment_key(row.moodle_course_id, row.moodle_user_id)
    return _deactivate(session, UserCourseEnrollment, list(keys), now, changes, cl.ENROLLMENT, keys)


def deactivate_enrollments_of_inactive_courses(
    session: Session, *, now: datetime, changes: ChangeLog | None = None
) -> int:
    inactive = select(CourseCatalog.id).where(CourseCatalog.is_active.is_(False))
    if changes is not None:
        return _deactivate_enrollments_logged(session, [UserCourseEnrollment.course_id.in_(inactive)], now, changes)
    return rowcount(
        session.execute(
            update(UserCourseEnrollment)
            .where(UserCourseEnrollment.course_id.in_(inactive), UserCourseEnrollment.is_active.is_(True))
            .values(is_active=False, synced_at=now)
        )
    )


def table_counts(session: Session) -> dict[str, int]:
    return {
        model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
        for model in (CourseCategory, CourseCatalog, User, UserCourseEnrollment)
    }
