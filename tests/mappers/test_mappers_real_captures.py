"""Every row of every real Moodle capture maps to what the mapping rules say (docs/contracts.md).

Rows come from tests/fixtures/real-moodle (a real Moodle 5.0.6+ site). Expected values
are written out here from the site's test data (that folder's README), not recomputed by
the mapper's own logic, so a rule broken in the mapper shows up as a mismatch.
"""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

import mapper_captures as cap
from moodle_assets.mappers import (
    CategoryRecord,
    CourseRecord,
    EnrollmentRecord,
    GuestUserExcluded,
    SiteCourseExcluded,
    UserRecord,
    is_guest_user,
    is_site_course,
    map_moodle_category_row,
    map_moodle_course_row,
    map_moodle_enrollment_row,
    map_moodle_user_row,
    map_rows,
)

SYNCED = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)


def ts(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


# ---------------------------------------------------------------- expected records

CATEGORIES = {
    1: CategoryRecord(1, "Category 1", None, "/1", 1, 10000, True, True, SYNCED),
    2: CategoryRecord(2, "Programming", None, "/2", 1, 20000, True, True, SYNCED),
    3: CategoryRecord(3, "Web Development", 2, "/2/3", 2, 30000, True, True, SYNCED),
    4: CategoryRecord(4, "Languages & Culture", None, "/4", 1, 40000, True, True, SYNCED),
}

COURSES = {
    2: CourseRecord(
        2, 2, "PY101", "Python Basics", "<p>Learn <b>Python</b> &amp; have fun</p>", 1,
        "EXT-PY101", True, datetime(2026, 10, 27, 17, 23, 18, tzinfo=timezone.utc),
        datetime(2027, 1, 25, 17, 23, 18, tzinfo=timezone.utc), Decimal("49.90"), "EUR",
        True, SYNCED,
    ),
    3: CourseRecord(
        3, 3, "JS201", "Advanced JavaScript", "Plain summary", 1, "EXT-JS201", True,
        ts(1794849798), None, Decimal("0"), "USD", True, SYNCED,
    ),
    4: CourseRecord(
        4, 3, "WEB100", "HTML & CSS for Beginners", "", 0, None, True, ts(1795281798), None,
        Decimal("1234.50"), "USD", True, SYNCED,
    ),
    5: CourseRecord(
        5, 4, "DE-A1", "Deutsch für Anfänger – Café & Straße",
        '<p>Grüße aus München / "quotes"</p>', 1, "EXT-DE/A1", True, ts(1795713798), None,
        None, None, True, SYNCED,
    ),
    6: CourseRecord(
        6, 2, "HIDDEN1", "Hidden Draft Course", "Not yet published", 1, "EXT-HIDDEN", False,
        None, None, Decimal("99"), "EUR", True, SYNCED,
    ),
    7: CourseRecord(
        7, 4, "EMPTY", "Empty Course", "Nobody enrolled", 1, "EXT-EMPTY", True, None, None,
        None, None, True, SYNCED,
    ),
}

# id: (email, username, first, last, idnumber, suspended, lastaccess)
USERS = {
    2: ("admin@example.com", "admin", "Admin", "User", None, False, None),
    3: ("alice@example.com", "alice", "Alice", "Anderson", "EMP-001", False, ts(1795706598)),
    4: ("bob@example.com", "bob", "Bob", "Brown", "EMP-002", False, ts(1794849798)),
    5: ("jose.mueller@example.com", "jose.muller", "José", "Müller", None, False, ts(1795713198)),
    6: ("ursula.upper@example.com", "upper", "Ursula", "Upper", None, False, None),
    7: ("sam.suspended@example.com", "suspended.user", "Sam", "Suspended", None, True, None),
    8: ("tina.teacher@example.com", "teacher1", "Tina", "Teacher", None, False, ts(1795713738)),
    9: ("dana.dual@example.com", "dualrole", "Dana", "Dual", None, False, ts(1795281798)),
    10: ("eve.expired@example.com", "expired", "Eve", "Expired", None, False, None),
    11: ("emil.es@example.com", "enrolsuspended", "Emil", "Enrolsuspended", None, False, None),
    12: ("finn.future@example.com", "future", "Finn", "Future", None, False, None),
    13: ("siobhan.oconnor@example.com", "oconnor", "Siobhán", "O'Connor", None, False, None),
    14: (None, "noemailuser", "Nora", "Noemail", None, False, None),
    15: ("lou.loner@example.com", "loner", "Lou", "Loner", None, False, None),
}
# record field -> the Moodle key it comes from (absent key = None, i.e. unknown)
USER_SOURCES = {
    "email": "email", "username": "username", "first_name": "firstname",
    "last_name": "lastname", "id_number": "idnumber", "is_suspended": "suspended",
    "last_access_at": "lastaccess",
}

# (course, user): (roles, last course access)
ENROLMENTS = {
    (2, 3): ("student", ts(1795706598)),
    (2, 4): ("student", ts(1794849798)),
    (2, 5): ("student", ts(1795713198)),
    (2, 6): ("student", None),
    (2, 7): ("student", None),
    (2, 8): ("editingteacher", ts(1795713738)),
    (2, 9): ("editingteacher,student", ts(1795281798)),
    (2, 10): ("student", None),
    (2, 11): ("student", None),
    (2, 12): ("student", None),
    (2, 13): ("student", None),
    (2, 14): ("student", None),
    (3, 3): ("student", ts(1795454598)),
    (3, 5): ("student", None),
    (3, 8): ("editingteacher", None),
    (3, 9): ("teacher", None),
    (4, 4): ("student", None),
    (4, 6): ("student", None),
    (5, 5): ("student", None),
    (5, 13): ("editingteacher", None),
    (6, 3): ("student", None),
    (6, 8): ("editingteacher", None),
}
# Not active = listed by onlysuspended (suspended, expired, not yet started enrolments).
INACTIVE = {(2, 10), (2, 11), (2, 12), (3, 5)}


def expected_user(row: dict) -> UserRecord:
    email, username, first, last, idnumber, suspended, lastaccess = USERS[row["id"]]
    values = dict(
        email=email, username=username, first_name=first, last_name=last,
        id_number=idnumber, is_suspended=suspended, last_access_at=lastaccess,
    )
    for field, key in USER_SOURCES.items():
        if key not in row:  # thinner rows (enrolled users, userfields=...) omit keys
            values[field] = None
    return UserRecord(row["id"], is_active=True, synced_at=SYNCED, **values)


# ---------------------------------------------------------------- classification

NAMES = cap.fixture_names()


def test_captures_are_present():
    assert cap.fixtures_dir().is_dir()
    assert len(NAMES) >= 70, NAMES


@pytest.mark.parametrize("name", NAMES)
def test_every_capture_is_classified(name):
    """A capture is either an error/non-JSON body or rows of a function we map."""
    if cap.is_error(name):
        return
    function = cap.wsfunction(name)
    known = (
        cap.CATEGORY_FUNCTIONS | cap.COURSE_FUNCTIONS | cap.USER_FUNCTIONS
        | cap.ENROLMENT_FUNCTIONS | cap.NOT_ROWS
    )
    assert function in known, f"{name}: decide how rows of {function} map"


def names_for(functions):
    return [n for n in NAMES if not cap.is_error(n) and cap.wsfunction(n) in functions]


# ---------------------------------------------------------------- categories


@pytest.mark.parametrize("name", names_for(cap.CATEGORY_FUNCTIONS))
def test_category_rows(name):
    rows = cap.rows(name)
    batch = map_rows(map_moodle_category_row, rows, synced_at=SYNCED)
    assert batch.rejected == [] and batch.skipped == 0
    assert len(batch.records) == len(rows) > 0
    for record in batch.records:
        assert record == CATEGORIES[record.moodle_category_id]


def test_category_languages_and_culture_is_unescaped():
    row = next(r for r in cap.rows("get_categories") if r["id"] == 4)
    assert row["name"] == "Languages &amp; Culture"
    assert map_moodle_category_row(row, synced_at=SYNCED).name == "Languages & Culture"


# ---------------------------------------------------------------- courses


@pytest.mark.parametrize("name", names_for(cap.COURSE_FUNCTIONS))
def test_course_rows(name):
    rows = cap.rows(name)
    batch = map_rows(map_moodle_course_row, rows, synced_at=SYNCED)
    assert batch.rejected == []
    assert len(batch.records) + batch.skipped == len(rows)
    for skip in batch.skipped_rows:
        assert skip.moodle_id == 1 and "site course" in skip.reason
    has_prices = cap.wsfunction(name) != "core_enrol_get_users_courses"
    for record in batch.records:
        expected = COURSES[record.moodle_course_id]
        if not has_prices:
            # core_enrol_get_users_courses rows carry no customfields: no visible price.
            expected = CourseRecord(**{**expected.as_dict(), "price": None, "currency": None})
        assert record == expected


def test_site_course_is_excluded():
    site = next(r for r in cap.rows("get_courses") if r["id"] == 1)
    assert site["format"] == "site" and is_site_course(site)
    with pytest.raises(SiteCourseExcluded) as info:
        map_moodle_course_row(site)
    assert info.value.moodle_id == 1 and info.value.reason
    assert not any(is_site_course(r) for r in cap.rows("get_courses") if r["id"] != 1)


@pytest.mark.parametrize(
    ("course_id", "price", "currency"),
    [
        (2, Decimal("49.90"), "EUR"),  # valueraw 49.9 (JSON number, trailing zero lost)
        (3, Decimal("0"), "USD"),  # a free course is a real price
        (4, Decimal("1234.50"), "USD"),
        (5, None, None),  # valueraw null
        (6, Decimal("99"), "EUR"),
        (7, None, None),  # no price, currency "" -> None
    ],
)
def test_course_prices(course_id, price, currency):
    row = next(r for r in cap.rows("get_courses") if r["id"] == course_id)
    record = map_moodle_course_row(row, default_currency="CHF", synced_at=SYNCED)
    assert (record.price, record.currency) == (price, currency)
    if price is not None:
        assert type(record.price) is Decimal


def test_hidden_course_and_empty_idnumber():
    rows = {r["id"]: r for r in cap.rows("get_courses")}
    assert map_moodle_course_row(rows[6]).is_visible is False
    assert rows[4]["idnumber"] == "" and map_moodle_course_row(rows[4]).id_number is None
    de = map_moodle_course_row(rows[5])
    assert de.fullname == "Deutsch für Anfänger – Café & Straße" and de.id_number == "EXT-DE/A1"
    # summaries are stored as the HTML Moodle sends (entities included)
    assert map_moodle_course_row(rows[2]).summary == "<p>Learn <b>Python</b> &amp; have fun</p>"


def test_pricetext_field_is_a_localized_text():
    """MOODLE_PRICE_FIELD may point at a text field; human notation is understood."""
    rows = {r["id"]: r for r in cap.rows("get_courses")}
    # "1,234.50" -> 1234.50 ; "0" -> 0 ; "49,90 €" carries a symbol: rejected with a reason
    assert map_moodle_course_row(rows[4], price_field="pricetext").price == Decimal("1234.50")
    assert map_moodle_course_row(rows[3], price_field="pricetext").price == Decimal("0")
    assert map_moodle_course_row(rows[7], price_field="pricetext").price is None
    batch = map_rows(map_moodle_course_row, [rows[2]], price_field="pricetext")
    assert [r.moodle_id for r in batch.rejected] == [2]
    assert "pricetext is not a number" in batch.rejected[0].reason


# ---------------------------------------------------------------- users


@pytest.mark.parametrize(
    "name", names_for(cap.USER_FUNCTIONS | cap.ENROLMENT_FUNCTIONS)
)
def test_user_rows(name):
    """User rows from the user functions and (thinner) enrolled-user rows."""
    rows = cap.rows(name)
    batch = map_rows(map_moodle_user_row, rows, synced_at=SYNCED)
    assert batch.rejected == []
    assert len(batch.records) + batch.skipped == len(rows)
    assert all(s.moodle_id == 1 and "guest" in s.reason for s in batch.skipped_rows)
    for record in batch.records:
        row = next(r for r in rows if r["id"] == record.moodle_user_id)
        assert record == expected_user(row)


def test_interesting_users():
    rows = {r["id"]: r for r in cap.rows("get_users_all_email_wildcard")}
    ursula = map_moodle_user_row(rows[6])
    assert rows[6]["email"] == "Ursula.Upper@Example.COM"
    assert ursula.email == "ursula.upper@example.com"
    assert map_moodle_user_row(rows[7]).is_suspended is True
    assert map_moodle_user_row(rows[5]).first_name == "José"
    assert map_moodle_user_row(rows[13]).last_name == "O'Connor"
    noemail = next(r for r in cap.rows("get_enrolled_users_course_2") if r["id"] == 14)
    assert noemail["email"] == "" and map_moodle_user_row(noemail).email is None
    # enrolled-user rows never carry `suspended`: unknown, not "not suspended"
    assert map_moodle_user_row(noemail).is_suspended is None


def test_guest_is_excluded():
    guest = cap.rows("get_users_all_email_wildcard")[0]
    assert guest["username"] == "guest" and is_guest_user(guest)
    with pytest.raises(GuestUserExcluded) as info:
        map_moodle_user_row(guest)
    assert info.value.moodle_id == 1
    batch = map_rows(map_moodle_user_row, cap.rows("get_users_all_email_wildcard"))
    assert batch.skipped == 1 and batch.rejected == [] and len(batch.records) == 13


# ---------------------------------------------------------------- enrollments


def enrolment_kwargs(name: str) -> tuple[int, bool | None]:
    """(course id, is_active for every row or None = decide per row) for a capture."""
    params = cap.params(name)
    course = int(params["courseid"])
    options = {
        params[k]: params[k.replace("[name]", "[value]")]
        for k in params
        if k.startswith("options[") and k.endswith("[name]")
    }
    if options.get("onlyactive") in ("1", "true"):
        return course, True
    if options.get("onlysuspended") in ("1", "true"):
        return course, False
    return course, None


@pytest.mark.parametrize("name", names_for(cap.ENROLMENT_FUNCTIONS))
def test_enrolment_rows(name):
    course, active = enrolment_kwargs(name)
    rows = cap.rows(name)
    records, skipped = [], []
    for row in rows:
        is_active = active if active is not None else (course, row["id"]) not in INACTIVE
        try:
            records.append(
                map_moodle_enrollment_row(row, moodle_course_id=course, is_active=is_active, synced_at=SYNCED)
            )
        except SiteCourseExcluded as exc:
            skipped.append(exc)
    if course == 1:
        # the site course lists every user with roles []: never enrolments
        assert records == [] and len(skipped) == len(rows) == 15
        return
    assert not skipped
    for record in records:
        key = (course, record.moodle_user_id)
        roles, last_access = ENROLMENTS[key]
        row = next(r for r in rows if r["id"] == record.moodle_user_id)
        if "roles" not in row:  # userfields=id,email
            roles = None
        if "lastcourseaccess" not in row:
            last_access = None
        assert record == EnrollmentRecord(
            record.moodle_user_id, course, key not in INACTIVE, roles, last_access, SYNCED
        )


def test_interesting_enrolments():
    rows = {r["id"]: r for r in cap.rows("get_enrolled_users_course_2")}
    dual = map_moodle_enrollment_row(rows[9], moodle_course_id=2, is_active=True)
    assert dual.roles == "editingteacher,student"
    upper = map_moodle_enrollment_row(rows[6], moodle_course_id=2, is_active=True)
    assert rows[6]["lastcourseaccess"] == 0 and upper.last_access_at is None
    # a suspended *account* keeps an active enrolment (onlyactive keeps user 7)
    active_ids = {r["id"] for r in cap.rows("get_enrolled_users_course_2_onlyactive")}
    assert 7 in active_ids and {10, 11, 12}.isdisjoint(active_ids)
    minimal = cap.rows("get_enrolled_users_course_2_userfields_minimal")[0]
    record = map_moodle_enrollment_row(minimal, moodle_course_id=2, is_active=True)
    assert record.roles is None and record.last_access_at is None


def test_paged_enrolments_join_to_the_full_list():
    pages = [f"get_enrolled_users_course_2_page_from_{i}_size_2" for i in range(0, 14, 2)]
    joined = [row for page in pages for row in cap.rows(page)]
    a = map_rows(map_moodle_enrollment_row, joined, moodle_course_id=2, is_active=True, synced_at=SYNCED)
    b = map_rows(
        map_moodle_enrollment_row, cap.rows("get_enrolled_users_course_2"),
        moodle_course_id=2, is_active=True, synced_at=SYNCED,
    )
    assert a.records == b.records and len(a.records) == 12
