"""The typed records the mappers produce and the store upserts (one per table row)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

# --------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------


#: No field withheld: every value in the record is what Moodle sent.
NOTHING_WITHHELD: frozenset[str] = frozenset()


class _Record:
    """Every record has ``withheld``: the names of its fields whose Moodle key was absent from
    the row. Moodle leaves a key out when the token may not see it (a missing capability, a
    hidden user field) as well as, for a few keys, when the value is empty; the mappers put a
    field here only when its absence may mean "not shown to this token". Such a field is
    ``None`` in the record and means *unknown*: the store keeps what it already has."""

    __slots__ = ()

    def as_dict(self) -> dict[str, Any]:
        """Column name -> value, shallow (cheaper than ``dataclasses.asdict``); ``withheld`` left out."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "withheld"}  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class CategoryRecord(_Record):
    """A ``course_category`` row (the local ``id`` is the store's)."""

    moodle_category_id: int
    name: str
    parent_moodle_category_id: int | None  # None for top level (Moodle sends parent 0)
    path: str  # Moodle's own, e.g. "/2/3"
    depth: int
    sort_order: int
    is_visible: bool | None  # None when Moodle omits `visible` (capability tier)
    is_active: bool
    synced_at: datetime
    withheld: frozenset[str] = field(default=NOTHING_WITHHELD, compare=False)


@dataclass(frozen=True, slots=True)
class CourseRecord(_Record):
    """A ``course_catalog`` row; the store resolves ``category_id`` from ``moodle_category_id``.

    ``summary`` is the HTML exactly as Moodle sends it (Moodle's web services render every
    text field through ``format_text``, so it is HTML whatever the stored format), never
    converted or sanitised here; ``summary_format`` records Moodle's ``summaryformat``
    int as sent (0=MOODLE, 1=HTML, 2=PLAIN, 4=MARKDOWN), ``None`` when absent.
    """

    moodle_course_id: int
    moodle_category_id: int | None  # None for category 0 / absent
    shortname: str
    fullname: str
    summary: str | None
    summary_format: int | None
    id_number: str | None  # None for "" or absent
    is_visible: bool | None  # None when Moodle omits `visible` (capability tier)
    start_at: datetime | None
    end_at: datetime | None
    price: Decimal | None
    currency: str | None
    is_active: bool
    synced_at: datetime
    withheld: frozenset[str] = field(default=NOTHING_WITHHELD, compare=False)


@dataclass(frozen=True, slots=True)
class UserRecord(_Record):
    """A ``users`` row. ``email`` is trimmed and lower-cased; ``None`` when empty or absent.

    ``None`` cannot tell "Moodle has no e-mail" from "this row did not carry one" (a
    ``userfields``-limited enrolled-user row, or a caller not allowed to see it): feed
    the users table from ``core_user_get_users``/``_by_field`` rows, which carry ``email``
    whenever the token may see it.
    """

    moodle_user_id: int
    email: str | None
    username: str | None
    first_name: str | None
    last_name: str | None
    id_number: str | None
    is_suspended: bool | None  # None when Moodle omits `suspended` (e.g. enrolled-user rows)
    last_access_at: datetime | None
    is_active: bool
    synced_at: datetime
    withheld: frozenset[str] = field(default=NOTHING_WITHHELD, compare=False)


@dataclass(frozen=True, slots=True)
class EnrollmentRecord(_Record):
    """A ``user_course_enrollment`` snapshot; the store resolves ``user_id``/``course_id``
    and keeps ``first_seen_at``."""

    moodle_user_id: int
    moodle_course_id: int
    is_active: bool
    roles: str | None  # sorted unique shortnames joined by ","; None when none
    last_access_at: datetime | None  # from lastcourseaccess; 0 (never) -> None
    synced_at: datetime
    withheld: frozenset[str] = field(default=NOTHING_WITHHELD, compare=False)
