"""Mapping many rows at once: records, rejections with reasons, and skipped counts."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .errors import RowRejected, RowSkipped
from .fields import UTC, _row_id
from .records import CategoryRecord, CourseRecord, EnrollmentRecord, UserRecord
from .rows import (
    map_moodle_category_row,
    map_moodle_course_row,
    map_moodle_enrollment_row,
    map_moodle_user_row,
)

# --------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rejection:
    """One row that was not mapped: its Moodle id (if readable) and why."""

    moodle_id: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class MappedBatch:
    """The outcome of :func:`map_rows`.

    ``records`` in input order; ``rejected`` rows that could not be mapped (count them as
    ``rows_rejected``); ``skipped`` how many valid rows are deliberately not synced (site
    course, guest), with their reasons in ``skipped_rows``.
    """

    records: list = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    skipped: int = 0
    skipped_rows: list[Rejection] = field(default_factory=list)

    @property
    def fetched(self) -> int:
        return len(self.records) + len(self.rejected) + self.skipped


_STAMPED = frozenset(
    {
        map_moodle_category_row,
        map_moodle_course_row,
        map_moodle_user_row,
        map_moodle_enrollment_row,
    }
)


def _natural_key(record: Any) -> Any:
    kind = type(record)
    if kind is CourseRecord:
        return record.moodle_course_id
    if kind is UserRecord:
        return record.moodle_user_id
    if kind is CategoryRecord:
        return record.moodle_category_id
    if kind is EnrollmentRecord:
        return record.moodle_user_id, record.moodle_course_id
    return None


def map_rows(mapper: Callable[..., Any], rows: Any, **kwargs: Any) -> MappedBatch:
    """Map every row with ``mapper(row, **kwargs)``; never raises for bad rows.

    * A ``RowRejected`` becomes a :class:`Rejection`; a ``RowSkipped`` (site course, guest)
      is counted in ``skipped``.
    * ``synced_at`` left out: one "now" (UTC) is taken for the whole batch.
    * A second row with the same Moodle id (same user and course for enrollments) is
      rejected as a duplicate and the first kept, and a second user with the same
      (case-insensitive) e-mail as an earlier one is rejected, per the contract's rule that
      an e-mail already linked to another Moodle id is a rejected row, never a merge. The
      store still has to apply that rule against what is already in the database.
    * ``rows`` that is not a list (or other iterable of rows) gives one rejection.

    Keyword mistakes (a bad ``moodle_course_id``, a naive ``synced_at``) are caller bugs
    and raise, as do bugs in a mapper other than this module's.
    """
    return RowMapper(mapper, **kwargs).map(rows)


class RowMapper:
    """:func:`map_rows` over a stream that arrives in parts: each :meth:`map` call maps one part,
    and the duplicate checks (Moodle id, user e-mail) span every part mapped so far, so mapping
    a stream part by part gives the records and rejections one ``map_rows`` call would, without
    holding every record at once."""

    def __init__(self, mapper: Callable[..., Any], **kwargs: Any) -> None:
        if mapper in _STAMPED and kwargs.get("synced_at") is None:
            kwargs["synced_at"] = datetime.now(UTC)
        self.mapper, self.kwargs = mapper, kwargs
        self.seen: set[Any] = set()
        self.emails: dict[str, int] = {}

    def map(self, rows: Any) -> MappedBatch:
        mapper, kwargs, seen, emails = self.mapper, self.kwargs, self.seen, self.emails
        records: list = []
        rejected: list[Rejection] = []
        skipped_rows: list[Rejection] = []
        if rows is None or isinstance(rows, (str, bytes, bytearray, dict)) or not isinstance(rows, Iterable):
            rejected.append(Rejection(None, f"expected a list of rows, got {type(rows).__name__}"))
            return MappedBatch(records, rejected, 0, skipped_rows)
        for row in rows:
            try:
                record = mapper(row, **kwargs)
            except RowSkipped as exc:
                skipped_rows.append(Rejection(exc.moodle_id, exc.reason))
                continue
            except RowRejected as exc:
                rejected.append(Rejection(exc.moodle_id, exc.reason))
                continue
            key = _natural_key(record)
            if key is not None:
                if key in seen:
                    rejected.append(
                        Rejection(
                            _row_id(row),
                            f"duplicate of an earlier row in this batch ({key})",
                        )
                    )
                    continue
                seen.add(key)
            if type(record) is UserRecord and record.email is not None:
                owner = emails.setdefault(record.email, record.moodle_user_id)
                if owner != record.moodle_user_id:
                    rejected.append(
                        Rejection(
                            record.moodle_user_id,
                            f"e-mail {record.email} already belongs to Moodle user {owner}",
                        )
                    )
                    continue
            records.append(record)
        return MappedBatch(records, rejected, len(skipped_rows), skipped_rows)
