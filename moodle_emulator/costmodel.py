"""What a request would cost a real Moodle server, in milliseconds.

Calibrated on the measurements in ``docs/moodle-facts.md`` §11 (a real Moodle 5.0.6+
site: PHP 8.2 built-in single-worker server, PostgreSQL 15, admin token, medians of 6–8
calls):

=============================================  ===========  =========================
measurement                                    real         this model
=============================================  ===========  =========================
site_info / get_categories (per request)       16–20 ms     18 ms (+0.2 ms/category)
core_user_get_users email=% , 76 users          253 ms       18 + 76 × 3.1 = 253.6 ms
core_user_get_users_by_field, 40 ids            141 ms       18 + 40 × 3.1 = 142 ms
get_enrolled_users, 60 rows, all fields         228 ms       18 + 60 × 3.50 = 228 ms
  userfields=id,email,lastcourseaccess,roles    120 ms       18 + 60 × 1.70 = 120 ms
  userfields=id                                  37 ms       18 + 60 × 0.32 = 37.2 ms
  onlyactive+onlysuspended, id,lastcourseaccess,
  roles (2 requests, ~54 rows in total)          75 ms       2 × 18 + 54 × 1.02 ≈ 91 ms
=============================================  ===========  =========================

Per-row cost of ``core_enrol_get_enrolled_users`` = 0.32 ms (id + fullname) + the cost of
each requested field (``ENROLLED_FIELD_MS``; ``roles`` 0.6, ``email`` 0.78, ``lastcourseaccess``
0.1, ``enrolledcourses`` 1.0 ...); with no ``userfields`` every field is charged (3.5 ms).
Courses are cheap per row (0.5 ms for get_courses, 0.8 ms for get_courses_by_field which
adds contacts), get_users_courses 2 ms per course (+1 ms with ``returnusercount``).
Errors cost the per-request overhead only; a 403 "web services disabled" costs 5 ms.
"""

from __future__ import annotations

OVERHEAD_MS = 18.0
DISABLED_MS = 5.0
USER_ROW_MS = 3.1
ENROLLED_BASE_MS = 0.32
ENROLLED_FIELD_MS = {
    "roles": 0.6,
    "lastcourseaccess": 0.1,
    "email": 0.68,
    "enrolledcourses": 1.0,
    "customfields": 0.2,
    "groups": 0.15,
    "preferences": 0.05,
    "username": 0.02,
    "firstname": 0.02,
    "lastname": 0.02,
    "department": 0.01,
    "idnumber": 0.02,
    "firstaccess": 0.02,
    "lastaccess": 0.02,
    "description": 0.05,
    "city": 0.01,
    "country": 0.01,
    "profileimageurlsmall": 0.05,
    "profileimageurl": 0.05,
}
# all fields: base + every listed field (rounded to the measured 3.5 ms/row)
ENROLLED_ALL_MS = 3.5
ROW_MS = {
    "core_webservice_get_site_info": 0.0,
    "core_course_get_categories": 0.2,
    "core_course_get_courses": 0.5,
    "core_course_get_courses_by_field": 0.8,
    "core_user_get_users": USER_ROW_MS,
    "core_user_get_users_by_field": USER_ROW_MS,
    "core_enrol_get_users_courses": 2.0,
}


def enrolled_row_ms(fields) -> float:
    if fields is None:
        return ENROLLED_ALL_MS
    return ENROLLED_BASE_MS + sum(ENROLLED_FIELD_MS.get(f, 0.0) for f in fields)


def charge(function: str | None, rows: int = 0, fields=None, error: bool = False) -> float:
    """Charged server time (ms) of one call."""
    if error or function is None:
        return OVERHEAD_MS
    if function == "core_enrol_get_enrolled_users":
        return OVERHEAD_MS + rows * enrolled_row_ms(fields)
    per = ROW_MS.get(function, 0.0)
    if function == "core_enrol_get_users_courses" and fields:
        per += 1.0  # enrolledusercount: one count query per course
    return OVERHEAD_MS + rows * per
