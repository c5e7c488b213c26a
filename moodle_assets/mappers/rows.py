"""Row mappers: one Moodle web-service row in, one typed record out (or a RowRejected)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .errors import GuestUserExcluded, RowRejected, SiteCourseExcluded
from .fields import (
    _INT_MAX,
    _clean_str,
    _describe,
    _human_text,
    _id_number,
    _int,
    _opt_bool,
    _opt_int,
    _raw_text,
    _require_row,
    _synced_at,
    _to_int,
    _ts,
)
from .prices import extract_course_price
from .records import CategoryRecord, CourseRecord, EnrollmentRecord, UserRecord

#: Moodle's SITEID: the front-page "course" that every site has. Not a catalog course.
SITE_COURSE_ID = 1
#: Username of Moodle's built-in guest account. Never synced.
GUEST_USERNAME = "guest"

# --------------------------------------------------------------------------------------
# Row mappers
# --------------------------------------------------------------------------------------


def is_site_course(row: Any) -> bool:
    """True for Moodle's site (front page) course: id 1 or format ``site``. Never raises."""
    if not isinstance(row, dict):
        return False
    return row.get("format") == "site" or _to_int(row.get("id")) == SITE_COURSE_ID


def is_guest_user(row: Any) -> bool:
    """True for Moodle's guest account (username ``guest``). Never raises."""
    return isinstance(row, dict) and row.get("username") == GUEST_USERNAME


_PATH = re.compile(r"(?:/[1-9][0-9]{0,18})+", re.ASCII)


def map_moodle_category_row(row: Any, *, synced_at: datetime | None = None) -> CategoryRecord:
    """A ``core_course_get_categories`` item -> :class:`CategoryRecord`.

    ``parent`` 0 becomes ``None``; ``path``, ``depth`` and ``sortorder`` are Moodle's own
    and required (they are always returned); ``path`` must look like ``/2/3`` and end
    with the category's own id. ``visible`` needs ``moodle/category:manage``: ``None``
    when absent.
    """
    when = _synced_at(synced_at)
    mid = _require_row(row, "category")
    name = _human_text(row, "name", mid, required=True)
    if row.get("parent") is None:
        raise RowRejected(mid, "missing parent")
    parent = _int(row["parent"], "parent", mid)
    if parent == mid:
        raise RowRejected(mid, "category is its own parent")
    path = _raw_text(row, "path", mid)
    if path is None:
        raise RowRejected(mid, "missing path")
    if not _PATH.fullmatch(path) or int(path.rsplit("/", 1)[1]) != mid:
        raise RowRejected(mid, f"path is not /.../{mid}: {_describe(path)}")
    depth = _opt_int(row, "depth", mid, minimum=1)
    if depth is None:
        raise RowRejected(mid, "missing depth")
    sort_order = _opt_int(row, "sortorder", mid)
    if sort_order is None:
        raise RowRejected(mid, "missing sortorder")
    return CategoryRecord(
        mid,
        name,  # type: ignore[arg-type]
        parent or None,
        path,
        depth,
        sort_order,
        _opt_bool(row, "visible", mid),
        True,
        when,
    )


def map_moodle_course_row(
    row: Any,
    *,
    price_field: str = "price",
    currency_field: str = "currency",
    default_currency: str | None = None,
    synced_at: datetime | None = None,
) -> CourseRecord:
    """A Moodle course row -> :class:`CourseRecord`; the site course raises SiteCourseExcluded.

    The category comes from ``categoryid`` (``category`` in ``core_enrol_get_users_courses``
    rows); 0 or absent is ``None``. ``summary`` is kept as the HTML Moodle sends, with its
    ``summaryformat`` recorded in ``summary_format``. ``visible``, ``idnumber`` and the
    dates are capability-dependent: ``None`` when absent (unknown, not false/empty).
    Price and currency: see :func:`extract_course_price`.
    """
    when = _synced_at(synced_at)
    mid = _require_row(row, "course")
    if row.get("format") == "site" or mid == SITE_COURSE_ID:
        raise SiteCourseExcluded(mid, "Moodle site course (front page), not a catalog course")
    category = row.get("categoryid")
    if category is None:
        category = row.get("category")
    category_id = None if category is None else _int(category, "categoryid", mid)
    summary = _raw_text(row, "summary", mid)
    price, currency = extract_course_price(row, price_field, currency_field, default_currency)
    return CourseRecord(
        mid,
        category_id or None,
        _human_text(row, "shortname", mid, required=True),  # type: ignore[arg-type]
        _human_text(row, "fullname", mid, required=True),  # type: ignore[arg-type]
        summary,
        _opt_int(row, "summaryformat", mid),
        _id_number(row, mid),
        _opt_bool(row, "visible", mid),
        _ts(row, "startdate", mid),
        _ts(row, "enddate", mid),
        price,
        currency,
        True,
        when,
    )


def _email(row: Mapping, mid: int | None) -> str | None:
    value = _raw_text(row, "email", mid)
    if value is None:
        return None
    value = value.strip().lower()
    return value or None


def map_moodle_user_row(row: Any, *, synced_at: datetime | None = None) -> UserRecord:
    """A Moodle user row -> :class:`UserRecord`; the guest account raises GuestUserExcluded.

    Works for ``core_user_get_users``/``_by_field`` rows and for the thinner
    ``core_enrol_get_enrolled_users`` rows (which never carry ``suspended``: ``None``).
    ``email`` is trimmed and lower-cased, ``None`` when empty or absent; ``lastaccess`` 0
    is ``None``. Names and username are HTML-unescaped and stripped.
    """
    when = _synced_at(synced_at)
    mid = _require_row(row, "user")
    if row.get("username") == GUEST_USERNAME:
        raise GuestUserExcluded(mid, "Moodle guest account, not synced")
    return UserRecord(
        mid,
        _email(row, mid),
        _human_text(row, "username", mid),
        _human_text(row, "firstname", mid),
        _human_text(row, "lastname", mid),
        _id_number(row, mid),
        _opt_bool(row, "suspended", mid),
        _ts(row, "lastaccess", mid),
        True,
        when,
    )


def _roles(row: Mapping, mid: int | None) -> str | None:
    roles = row.get("roles")
    if roles is None:
        return None
    if type(roles) is not list:
        raise RowRejected(mid, f"roles is not a list: {type(roles).__name__}")
    names = set()
    for index, role in enumerate(roles):
        if not isinstance(role, dict):
            raise RowRejected(mid, f"roles[{index}] is not a JSON object")
        shortname = role.get("shortname")
        if type(shortname) is not str:
            raise RowRejected(mid, f"roles[{index}].shortname is not text")
        shortname = _clean_str(shortname, "role shortname", mid).strip()
        if "," in shortname:
            raise RowRejected(mid, f"role shortname contains a comma: {_describe(shortname)}")
        if shortname:
            names.add(shortname)
    return ",".join(sorted(names)) if names else None


def _keyword_int(value: Any, name: str) -> int:
    number = _to_int(value)
    if number is None or not 0 < number <= _INT_MAX:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return number


def _keyword_bool(value: Any, name: str) -> bool:
    if type(value) is bool:
        return value
    if type(value) is int and value in (0, 1):
        return bool(value)
    raise ValueError(f"{name} must be a bool, got {value!r}")


def map_moodle_enrollment_row(
    row: Any,
    *,
    moodle_course_id: int,
    is_active: bool,
    synced_at: datetime | None = None,
) -> EnrollmentRecord:
    """A ``core_enrol_get_enrolled_users`` item for one course -> :class:`EnrollmentRecord`.

    ``is_active`` is the caller's knowledge (the user is listed with ``onlyactive=1``);
    a suspended *account* does not make an enrollment inactive. ``roles`` are the sorted,
    de-duplicated role shortnames joined by ``,`` (``None`` when none or absent);
    ``lastcourseaccess`` 0 (never) is ``None``. Site-course participants (everyone, with no
    roles) raise SiteCourseExcluded and the guest account GuestUserExcluded.

    Bad keyword arguments are caller bugs and raise ``ValueError``/``TypeError``.
    """
    course_id = _keyword_int(moodle_course_id, "moodle_course_id")
    active = _keyword_bool(is_active, "is_active")
    when = _synced_at(synced_at)
    mid = _require_row(row, "enrolled user")
    if course_id == SITE_COURSE_ID:
        raise SiteCourseExcluded(mid, "participant of the Moodle site course, not an enrollment")
    if row.get("username") == GUEST_USERNAME:
        raise GuestUserExcluded(mid, "Moodle guest account, not synced")
    return EnrollmentRecord(
        mid,
        course_id,
        active,
        _roles(row, mid),
        _ts(row, "lastcourseaccess", mid),
        when,
    )
