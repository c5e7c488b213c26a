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
from .prices import extract_course_price, lists_custom_field
from .records import NOTHING_WITHHELD, CategoryRecord, CourseRecord, EnrollmentRecord, UserRecord

#: Moodle's SITEID: the front-page "course" that every site has. Not a catalog course.
SITE_COURSE_ID = 1
#: Username of Moodle's built-in guest account. Never synced.
GUEST_USERNAME = "guest"
#: Id of the guest account ($CFG->siteguest): Moodle's installer creates it first, so it is 1.
#: Recognised by id because a token without moodle/user:viewalldetails never sees its username.
GUEST_USER_ID = 1

# --------------------------------------------------------------------------------------
# Row mappers
# --------------------------------------------------------------------------------------


def is_site_course(row: Any) -> bool:
    """True for Moodle's site (front page) course: id 1 or format ``site``. Never raises."""
    if not isinstance(row, dict):
        return False
    return row.get("format") == "site" or _to_int(row.get("id")) == SITE_COURSE_ID


def is_guest_user(row: Any) -> bool:
    """True for Moodle's guest account: id 1 (``$CFG->siteguest``) or username ``guest``. Never raises."""
    if not isinstance(row, dict):
        return False
    return _to_int(row.get("id")) == GUEST_USER_ID or row.get("username") == GUEST_USERNAME


def _absent(row: Mapping, keys: dict[str, str]) -> frozenset[str]:
    """Record fields whose Moodle key (``keys``: record field -> row key) is missing from the row."""
    missing = [name for name, key in keys.items() if key not in row]
    return frozenset(missing) if missing else NOTHING_WITHHELD


_PATH = re.compile(r"(?:/[1-9][0-9]{0,18})+", re.ASCII)


def map_moodle_category_row(row: Any, *, synced_at: datetime | None = None) -> CategoryRecord:
    """A ``core_course_get_categories`` item -> :class:`CategoryRecord`.

    ``parent`` 0 becomes ``None``; ``path``, ``depth`` and ``sortorder`` are Moodle's own
    and required (they are always returned); ``path`` must look like ``/2/3`` and end
    with the category's own id. ``visible`` needs ``moodle/category:manage``: ``None``
    and withheld when absent.
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
        _absent(row, _CATEGORY_OPTIONAL),
    )


_CATEGORY_OPTIONAL = {"is_visible": "visible"}
# Course keys a token may not be shown: the "enter the course" set (course:view), idnumber
# (course:update); summary is public but checked all the same. An empty idnumber is sent as "".
_COURSE_OPTIONAL = {
    "summary": "summary",
    "summary_format": "summaryformat",
    "id_number": "idnumber",
    "is_visible": "visible",
    "start_at": "startdate",
    "end_at": "enddate",
}


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
    dates are capability-dependent: ``None`` and withheld when absent (unknown, not
    false/empty). Price and currency: see :func:`extract_course_price`; both are withheld when
    the row's ``customfields`` do not list the price field (Moodle lists every field the token
    may see, empty ones included).
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
    withheld = _absent(row, _COURSE_OPTIONAL)
    if "categoryid" not in row and "category" not in row:
        withheld |= {"moodle_category_id"}
    if not lists_custom_field(row, price_field):
        withheld |= {"price", "currency"}
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
        withheld,
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

    Withheld (absent = not shown to this token, see ``UserRecord``): ``email`` (Moodle sends
    ``""`` for an empty one), ``username``, the names, ``suspended`` and ``lastaccess``.
    ``idnumber`` is also left out when it is empty, so its absence means "empty" only in a
    row that shows ``username``: both need ``moodle/user:viewalldetails`` (or the row is the
    token's own account).
    """
    when = _synced_at(synced_at)
    mid = _require_row(row, "user")
    if mid == GUEST_USER_ID or row.get("username") == GUEST_USERNAME:
        raise GuestUserExcluded(mid, "Moodle guest account, not synced")
    withheld = _absent(row, _USER_OPTIONAL)
    if "idnumber" not in row and "username" not in row:
        withheld |= {"id_number"}
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
        withheld,
    )


_USER_OPTIONAL = {
    "email": "email",
    "username": "username",
    "first_name": "firstname",
    "last_name": "lastname",
    "is_suspended": "suspended",
    "last_access_at": "lastaccess",
}
_ENROLLMENT_OPTIONAL = {"roles": "roles", "last_access_at": "lastcourseaccess"}


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
    ``lastcourseaccess`` 0 (never) is ``None``; it is withheld when absent (a site that hides
    "last access" from the token), as are ``roles``. Site-course participants (everyone, with no
    roles) raise SiteCourseExcluded and the guest account (by id) GuestUserExcluded.

    Bad keyword arguments are caller bugs and raise ``ValueError``/``TypeError``.
    """
    course_id = _keyword_int(moodle_course_id, "moodle_course_id")
    active = _keyword_bool(is_active, "is_active")
    when = _synced_at(synced_at)
    mid = _require_row(row, "enrolled user")
    if course_id == SITE_COURSE_ID:
        raise SiteCourseExcluded(mid, "participant of the Moodle site course, not an enrollment")
    if mid == GUEST_USER_ID or row.get("username") == GUEST_USERNAME:
        raise GuestUserExcluded(mid, "Moodle guest account, not synced")
    return EnrollmentRecord(
        mid,
        course_id,
        active,
        _roles(row, mid),
        _ts(row, "lastcourseaccess", mid),
        when,
        _absent(row, _ENROLLMENT_OPTIONAL),
    )
