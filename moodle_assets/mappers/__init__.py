"""Pure mappers from raw Moodle web-service rows to typed records for the app database.

Everything here is a pure function of its arguments: no I/O, no clock unless you leave
``synced_at`` out, and no imports from the rest of the project (README, "Architecture").
The record classes are what the store upserts.

Input rows are the decoded JSON objects Moodle returns:

* categories: ``core_course_get_categories`` items;
* courses: ``core_course_get_courses`` items, ``core_course_get_courses_by_field``
  ``courses[]`` items, and (without prices) ``core_enrol_get_users_courses`` items;
* users: ``core_user_get_users`` ``users[]``, ``core_user_get_users_by_field`` items, and
  ``core_enrol_get_enrolled_users`` items (fewer keys);
* enrollments: ``core_enrol_get_enrolled_users`` items plus the course id and the active
  flag the caller knows from the ``onlyactive=1`` pass.

Rules (`docs/contracts.md`, "Mapping rules"):

* A Unix timestamp of ``0`` is "none" (``None``); any other is a UTC-aware ``datetime``.
* Ints are accepted as JSON numbers or as canonical int strings (``"42"``, never ``"042"``,
  ``" 42"``, ``"4_2"`` or ``"42.0"``); an integral float (``42.0``) is accepted too.
* Bool-ish values: ``true``/``false``, ``0``/``1``, ``"0"``/``"1"``, ``"true"``/``"false"``.
* Optional keys that Moodle omits for lower capability tiers (``visible``, ``idnumber``,
  ``suspended``, dates, ``email``, ``username``...) map to ``None`` = unknown, never to
  ``False``, and the field is named in the record's ``withheld`` set, so the store keeps the
  value it has instead of overwriting it with "empty".
* The site course (id 1) and the guest account (id 1, ``$CFG->siteguest``) are recognised by
  id, which every token sees, not by ``format``/``username``, which weaker tokens lose.
* Human text (course ``fullname``/``shortname``, category ``name``, user ``username``,
  ``firstname``, ``lastname``) is HTML-unescaped (Moodle's ``format_string`` sends
  ``&amp;``) and stripped of surrounding white space. ``summary`` is kept exactly as the
  HTML Moodle sends; its format int goes to ``summary_format``.
* Role shortnames, never the (usually empty) role names.

A row that cannot be mapped raises :class:`RowRejected` (a ``ValueError`` carrying the
row's Moodle id, if it has a readable one, and a human reason). Rows that are valid but
deliberately not synced (the site course, the guest account) raise a subclass of
:class:`RowSkipped`, itself a ``RowRejected``, so callers that only catch ``RowRejected``
still never crash; :func:`map_rows` counts them as *skipped*, not *rejected*. No mapper
raises anything else for any JSON-like row, whatever its shape (property-tested).

``synced_at``: pass one timestamp for the whole sync run. When it is left out a mapper
uses "now" (UTC) so a record is never written without one; :func:`map_rows` takes one
"now" for the whole batch, so every record of a batch carries the same ``synced_at``.
"""

from __future__ import annotations

from .batch import MappedBatch, Rejection, RowMapper, map_rows
from .errors import GuestUserExcluded, RowRejected, RowSkipped, SiteCourseExcluded
from .prices import (
    PRICE_MAX_INTEGER_DIGITS,
    PRICE_MAX_SCALE,
    extract_course_price,
    parse_currency,
    parse_price,
)
from .records import NOTHING_WITHHELD, CategoryRecord, CourseRecord, EnrollmentRecord, UserRecord
from .rows import (
    GUEST_USER_ID,
    GUEST_USERNAME,
    SITE_COURSE_ID,
    is_guest_user,
    is_site_course,
    map_moodle_category_row,
    map_moodle_course_row,
    map_moodle_enrollment_row,
    map_moodle_user_row,
)

__all__ = [
    "GUEST_USERNAME",
    "GUEST_USER_ID",
    "NOTHING_WITHHELD",
    "PRICE_MAX_INTEGER_DIGITS",
    "PRICE_MAX_SCALE",
    "SITE_COURSE_ID",
    "CategoryRecord",
    "CourseRecord",
    "EnrollmentRecord",
    "GuestUserExcluded",
    "MappedBatch",
    "Rejection",
    "RowMapper",
    "RowRejected",
    "RowSkipped",
    "SiteCourseExcluded",
    "UserRecord",
    "extract_course_price",
    "is_guest_user",
    "is_site_course",
    "map_moodle_category_row",
    "map_moodle_course_row",
    "map_moodle_enrollment_row",
    "map_moodle_user_row",
    "map_rows",
    "parse_currency",
    "parse_price",
]
