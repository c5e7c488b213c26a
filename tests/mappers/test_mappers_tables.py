"""Table-driven cases: capability tiers, string ints, bad types, prices, currencies, batches."""
from __future__ import annotations

import pickle
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from moodle_assets.mappers import (
    PRICE_MAX_SCALE,
    CategoryRecord,
    CourseRecord,
    GuestUserExcluded,
    MappedBatch,
    Rejection,
    RowRejected,
    RowSkipped,
    SiteCourseExcluded,
    extract_course_price,
    is_guest_user,
    is_site_course,
    map_moodle_category_row,
    map_moodle_course_row,
    map_moodle_enrollment_row,
    map_moodle_user_row,
    map_rows,
    parse_currency,
    parse_price,
)

T = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)


def course(**overrides):
    row = {
        "id": 42, "shortname": "C42", "categoryid": 3, "fullname": "Course 42",
        "summary": "<p>x</p>", "summaryformat": 1, "format": "topics",
        "startdate": 1795713798, "enddate": 0, "idnumber": "X-42", "visible": 1,
        "customfields": [
            {"name": "Price", "shortname": "price", "type": "number", "valueraw": 10, "value": "10.00"},
            {"name": "Currency", "shortname": "currency", "type": "text", "valueraw": "eur", "value": "eur"},
        ],
    }
    row.update(overrides)
    return {k: v for k, v in row.items() if v is not DROP}


def user(**overrides):
    row = {
        "id": 42, "username": "u42", "firstname": "Ann", "lastname": "Lee",
        "email": " Ann.Lee@Example.org ", "idnumber": "E-42", "suspended": False,
        "lastaccess": 1795713798,
    }
    row.update(overrides)
    return {k: v for k, v in row.items() if v is not DROP}


def category(**overrides):
    row = {"id": 5, "name": "Cat", "parent": 2, "sortorder": 10, "depth": 2, "path": "/2/5", "visible": 1}
    row.update(overrides)
    return {k: v for k, v in row.items() if v is not DROP}


def enrolled(**overrides):
    row = {"id": 42, "fullname": "Ann Lee", "lastcourseaccess": 0,
           "roles": [{"roleid": 5, "name": "", "shortname": "student", "sortorder": 0}]}
    row.update(overrides)
    return {k: v for k, v in row.items() if v is not DROP}


DROP = object()


# ------------------------------------------------------------ capability tiers


@pytest.mark.parametrize(
    ("row", "field", "expected"),
    [
        # core_course_get_courses for a plain reader: no visible / idnumber / dates
        (course(visible=DROP), "is_visible", None),
        (course(idnumber=DROP), "id_number", None),
        (course(startdate=DROP, enddate=DROP), "start_at", None),
        # core_course_search_courses-style public structure: no format, no summary format
        (course(format=DROP, summaryformat=DROP), "summary_format", None),
        (course(summary=DROP), "summary", None),
        (course(customfields=DROP), "price", None),
        (course(categoryid=DROP), "moodle_category_id", None),
        (course(categoryid=DROP, category=7), "moodle_category_id", 7),  # users_courses
        (course(visible=0), "is_visible", False),
        (course(visible="1"), "is_visible", True),
        (course(visible=True), "is_visible", True),
    ],
)
def test_course_capability_tiers(row, field, expected):
    assert getattr(map_moodle_course_row(row, synced_at=T), field) == expected


@pytest.mark.parametrize(
    ("row", "field", "expected"),
    [
        (user(suspended=DROP), "is_suspended", None),  # hiddenuserfields / enrolled users
        (user(suspended=True), "is_suspended", True),
        (user(suspended=0), "is_suspended", False),
        (user(email=DROP), "email", None),
        (user(email=""), "email", None),
        (user(email="   "), "email", None),
        (user(idnumber=DROP), "id_number", None),
        (user(idnumber=""), "id_number", None),
        (user(lastaccess=DROP), "last_access_at", None),
        (user(lastaccess=0), "last_access_at", None),
        (user(username=DROP, firstname=DROP, lastname=DROP), "username", None),
        (user(), "email", "ann.lee@example.org"),
        (user(firstname="Tom &amp; Jerry"), "first_name", "Tom & Jerry"),
        (user(lastname="O&#39;Brien"), "last_name", "O'Brien"),
        (user(lastname=" "), "last_name", ""),
    ],
)
def test_user_capability_tiers(row, field, expected):
    assert getattr(map_moodle_user_row(row, synced_at=T), field) == expected


@pytest.mark.parametrize(
    ("row", "field", "expected"),
    [
        # without moodle/category:manage: no visible, idnumber, timemodified, theme
        (category(visible=DROP), "is_visible", None),
        (category(visible=0), "is_visible", False),
        (category(parent=0, depth=1, path="/5"), "parent_moodle_category_id", None),
        (category(parent="2"), "parent_moodle_category_id", 2),
        (category(name="A &lt;b&gt; &amp; C"), "name", "A <b> & C"),
    ],
)
def test_category_capability_tiers(row, field, expected):
    assert getattr(map_moodle_category_row(row, synced_at=T), field) == expected


# ------------------------------------------------------------ ints from strings


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (42, True), ("42", True), (42.0, True), ("0042", False), (" 42", False),
        ("42 ", False), ("4_2", False), ("+42", False), ("42.0", False), ("4e1", False),
        ("٤٢", False), (True, False), (None, False), ([42], False), ({"v": 42}, False),
        (42.5, False), (float("nan"), False), (0, False), (-1, False), (2**63, False),
        ("9" * 30, False),
    ],
)
def test_ids(value, ok):
    row = course(id=value)
    if ok:
        assert map_moodle_course_row(row, synced_at=T).moodle_course_id == 42
    else:
        with pytest.raises(RowRejected) as info:
            map_moodle_course_row(row, synced_at=T)
        assert info.value.moodle_id is None and "id" in info.value.reason


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1795713798, datetime(2026, 11, 26, 17, 23, 18, tzinfo=timezone.utc)),
        ("1795713798", datetime(2026, 11, 26, 17, 23, 18, tzinfo=timezone.utc)),
        (0, None), ("0", None), (None, None), (1, datetime(1970, 1, 1, 0, 0, 1, tzinfo=timezone.utc)),
    ],
)
def test_timestamps(value, expected):
    record = map_moodle_course_row(course(startdate=value), synced_at=T)
    assert record.start_at == expected
    if expected is not None:
        assert record.start_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize("value", [-1, "abc", "1.5", 1.5, True, [], {}, 10**13, "-5"])
def test_bad_timestamps(value):
    with pytest.raises(RowRejected) as info:
        map_moodle_course_row(course(startdate=value))
    assert info.value.moodle_id == 42 and "startdate" in info.value.reason


# ------------------------------------------------------------ bad types


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (None, "not a JSON object"),
        ([], "not a JSON object"),
        ("course", "not a JSON object"),
        (42, "not a JSON object"),
        ({}, "no id"),
        (course(shortname=DROP), "missing shortname"),
        (course(shortname=None), "missing shortname"),
        (course(fullname="  "), "empty fullname"),
        (course(fullname=["x"]), "fullname is not text"),
        (course(summary=5), "summary is not text"),
        (course(summaryformat="html"), "summaryformat is not an integer"),
        (course(idnumber=7), "idnumber is not text"),
        (course(visible=2), "visible is not a boolean"),
        (course(visible="yes"), "visible is not a boolean"),
        (course(categoryid=-1), "categoryid out of range"),
        (course(categoryid="x"), "categoryid is not an integer"),
        (course(customfields={"price": 1}), "customfields is not a list"),
        (course(customfields=[1]), "customfields[0] is not a JSON object"),
        (course(fullname="a\x00b"), "NUL"),
        (course(fullname="bad \ud800 surrogate"), "not valid Unicode"),
    ],
)
def test_course_rejections(row, reason):
    with pytest.raises(RowRejected) as info:
        map_moodle_course_row(row, synced_at=T)
    assert reason in info.value.reason
    assert not isinstance(info.value, RowSkipped)


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (category(parent=DROP), "missing parent"),
        (category(parent=5), "its own parent"),
        (category(path="/2/6"), "path is not"),
        (category(path="2/5"), "path is not"),
        (category(path=DROP), "missing path"),
        (category(depth=0), "depth out of range"),
        (category(sortorder=DROP), "missing sortorder"),
        (category(name=""), "empty name"),
    ],
)
def test_category_rejections(row, reason):
    with pytest.raises(RowRejected) as info:
        map_moodle_category_row(row)
    assert reason in info.value.reason and info.value.moodle_id == 5


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (user(email=5), "email is not text"),
        (user(suspended="maybe"), "suspended is not a boolean"),
        (user(username={"x": 1}), "username is not text"),
        (user(lastaccess="yesterday"), "lastaccess is not a Unix timestamp"),
    ],
)
def test_user_rejections(row, reason):
    with pytest.raises(RowRejected) as info:
        map_moodle_user_row(row)
    assert reason in info.value.reason and info.value.moodle_id == 42


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        ([], None),
        (DROP, None),
        ([{"shortname": "student"}, {"shortname": "editingteacher"}], "editingteacher,student"),
        ([{"shortname": "student"}, {"shortname": "student"}], "student"),  # two enrol methods
        ([{"roleid": 5, "name": "Learner", "shortname": "student"}], "student"),  # never the name
        ([{"shortname": " teacher "}, {"shortname": ""}], "teacher"),
    ],
)
def test_roles(roles, expected):
    record = map_moodle_enrollment_row(enrolled(roles=roles), moodle_course_id=3, is_active=False)
    assert record.roles == expected and record.is_active is False and record.moodle_course_id == 3


@pytest.mark.parametrize(
    ("roles", "reason"),
    [
        ("student", "roles is not a list"),
        ([None], "roles[0] is not a JSON object"),
        ([{"name": "Student"}], "roles[0].shortname is not text"),
        ([{"shortname": "a,b"}], "contains a comma"),
    ],
)
def test_bad_roles(roles, reason):
    with pytest.raises(RowRejected) as info:
        map_moodle_enrollment_row(enrolled(roles=roles), moodle_course_id=3, is_active=True)
    assert reason in info.value.reason


def test_enrolment_keywords_and_exclusions():
    record = map_moodle_enrollment_row(enrolled(lastcourseaccess="1795713798"), moodle_course_id="3", is_active=1)
    assert record.moodle_course_id == 3 and record.is_active is True
    assert record.last_access_at == datetime(2026, 11, 26, 17, 23, 18, tzinfo=timezone.utc)
    with pytest.raises(SiteCourseExcluded):
        map_moodle_enrollment_row(enrolled(), moodle_course_id=1, is_active=True)
    with pytest.raises(GuestUserExcluded):
        map_moodle_enrollment_row(enrolled(id=1, username="guest"), moodle_course_id=3, is_active=True)
    for bad in (0, -3, "x", None):
        with pytest.raises(ValueError):
            map_moodle_enrollment_row(enrolled(), moodle_course_id=bad, is_active=True)
    with pytest.raises(ValueError):
        map_moodle_enrollment_row(enrolled(), moodle_course_id=3, is_active="yes")


# ------------------------------------------------------------ prices


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None), ("", None), ("   ", None),
        (0, Decimal("0")), ("0", Decimal("0")), (0.0, Decimal("0")), (-0.0, Decimal("0")), ("-0", Decimal("0")),
        (49.9, Decimal("49.90")), (1234.5, Decimal("1234.50")), (99, Decimal("99")),
        (0.1, Decimal("0.1")), (19.99, Decimal("19.99")), (Decimal("12.3400"), Decimal("12.34")),
        ("49.90", Decimal("49.90")), ("49,90", Decimal("49.90")), ("49,9", Decimal("49.9")),
        ("1,234.50", Decimal("1234.50")), ("1.234,50", Decimal("1234.50")),
        ("1 234,50", Decimal("1234.50")), ("1\u00a0234,50", Decimal("1234.50")),
        ("1\u202f234,50", Decimal("1234.50")), ("1'234.50", Decimal("1234.50")),
        ("1,234,567", Decimal("1234567")), ("1.234.567", Decimal("1234567")),
        ("1.234.567,89", Decimal("1234567.89")), ("1 234", Decimal("1234")),
        ("0,500", Decimal("0.5")), ("0.500", Decimal("0.5")), ("1234,567", Decimal("1234.567")),
        ("1.2340", Decimal("1.234")), ("1,234.00", Decimal("1234")), ("12,3456", Decimal("12.3456")),
        (" 49.90 ", Decimal("49.90")), ("007", Decimal("7")),
    ],
)
def test_parse_price_accepts(raw, expected):
    value = parse_price(raw)
    assert value == expected
    assert value is None or (type(value) is Decimal and not value.is_signed())


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("1,234", "ambiguous"), ("1.234", "ambiguous"), ("12,500", "ambiguous"), ("999.999", "ambiguous"),
        (-1, "negative"), (-0.01, "negative"), ("-5", "negative"), ("-1,50", "negative"),
        (Decimal("-2"), "negative"),
        (float("nan"), "not a finite number"), (float("inf"), "not a finite number"),
        (Decimal("NaN"), "not a finite number"), (Decimal("sNaN"), "not a finite number"),
        (Decimal("Infinity"), "not a finite number"),
        ("NaN", "not a number"), ("Infinity", "not a number"), ("inf", "not a number"),
        ("1e5", "not a number"), ("abc", "not a number"), ("49,90 €", "not a number"),
        ("€49.90", "not a number"), ("$5", "not a number"), ("+5", "not a number"),
        ("5.", "not a number"), (".5", "no digits"), ("1,2,3", "irregular"), ("12 34", "irregular"),
        ("1,23,456.00", "irregular"), ("1 234.567,8", "mixed"), ("1.234,567.8", "not a number"),
        ("1'234 567", "mixed"), ("--5", "not a number"), ("0x10", "not a number"),
        (True, "not a number"), ([1], "not a number"), ({"v": 1}, "not a number"),
        (10**14, "too large"), (1e20, "too large"), ("99999999999999.9999", None),
        (0.00001, "decimal places"), ("1.23456", "decimal places"), (0.30000000000000004, "decimal places"),
    ],
)
def test_parse_price_rejects(raw, reason):
    if reason is None:  # the largest accepted value, for contrast
        assert parse_price(raw) == Decimal(raw)
        return
    with pytest.raises(RowRejected) as info:
        parse_price(raw, moodle_id=9)
    assert reason in info.value.reason and info.value.moodle_id == 9


def test_price_scale_rule_allows_trailing_zeros():
    assert PRICE_MAX_SCALE == 4
    assert parse_price("1.23450000") == Decimal("1.2345")


@pytest.mark.parametrize(
    ("fields", "default", "expected"),
    [
        ([], None, (None, None)),
        ([{"shortname": "price", "valueraw": 10}], None, (Decimal(10), None)),
        ([{"shortname": "price", "valueraw": 10}], "chf", (Decimal(10), "CHF")),
        ([{"shortname": "price", "valueraw": 10}, {"shortname": "currency", "valueraw": ""}], "CHF", (Decimal(10), "CHF")),
        ([{"shortname": "price", "valueraw": 10}, {"shortname": "currency", "valueraw": " usd "}], "CHF", (Decimal(10), "USD")),
        ([{"shortname": "price", "valueraw": None}, {"shortname": "currency", "valueraw": "EUR"}], "CHF", (None, None)),
        # a bad currency on an unpriced course does not matter
        ([{"shortname": "price", "valueraw": ""}, {"shortname": "currency", "valueraw": "euro"}], None, (None, None)),
        # select-type currency: valueraw is a 1-based index, the label is in value
        ([{"shortname": "price", "valueraw": "5"}, {"shortname": "currency", "type": "select", "valueraw": 2, "value": "GBP"}], None, (Decimal(5), "GBP")),
        # the localized `value` is never read for the price
        ([{"shortname": "price", "valueraw": None, "value": "12,00 €"}], None, (None, None)),
        # other fields are ignored, whatever they hold
        ([{"shortname": "internalcode", "valueraw": [1]}, {"no": "shortname"}, {"shortname": "price", "valueraw": 3}], None, (Decimal(3), None)),
    ],
)
def test_extract_course_price(fields, default, expected):
    row = {"id": 42, "customfields": fields}
    assert extract_course_price(row, default_currency=default) == expected
    assert extract_course_price(row, "price", "currency", default) == expected


def test_extract_course_price_custom_field_names():
    row = {"id": 42, "customfields": [
        {"shortname": "cost", "valueraw": "19,90"}, {"shortname": "cur", "valueraw": "sek"}]}
    assert extract_course_price(row, price_field="cost", currency_field="cur") == (Decimal("19.90"), "SEK")
    assert map_moodle_course_row(course(customfields=row["customfields"]), price_field="cost",
                                 currency_field="cur").currency == "SEK"


@pytest.mark.parametrize("currency", ["EURO", "€", "E1R", "eü r", "ÄÖÜ", 978, True])
def test_bad_currency_on_a_priced_course(currency):
    row = {"id": 42, "customfields": [{"shortname": "price", "valueraw": 1}, {"shortname": "currency", "valueraw": currency}]}
    with pytest.raises(RowRejected) as info:
        extract_course_price(row)
    assert "currency" in info.value.reason and info.value.moodle_id == 42


def test_bad_default_currency_is_a_rejection_not_a_crash():
    row = {"id": 42, "customfields": [{"shortname": "price", "valueraw": 1}]}
    with pytest.raises(RowRejected, match="default currency"):
        extract_course_price(row, default_currency="euro")
    assert parse_currency("") is None and parse_currency(" gbp ") == "GBP"


# ------------------------------------------------------------ exclusions


@pytest.mark.parametrize(
    ("row", "site"),
    [({"id": 1, "format": "site"}, True), ({"id": "1"}, True), ({"id": 9, "format": "site"}, True),
     ({"id": 2, "format": "topics"}, False), (None, False), ([], False), ({"id": [1]}, False)],
)
def test_is_site_course(row, site):
    assert is_site_course(row) is site


@pytest.mark.parametrize(
    ("row", "guest"),
    [({"id": 1, "username": "guest"}, True), ({"id": 3, "username": "guesthouse"}, False),
     ({"id": 1}, True),  # by id: a token without user:viewalldetails never sees the username
     ({"id": "1", "firstname": "Guest user"}, True), ({"id": 2}, False), ("guest", False), (None, False)],
)
def test_is_guest_user(row, guest):
    assert is_guest_user(row) is guest


# ------------------------------------------------------------ withheld: "cannot see" is not "empty"


@pytest.mark.parametrize(
    ("row", "withheld"),
    [
        (user(), set()),
        (user(email=""), set()),  # Moodle sends "" for an empty email: known, empty
        (user(email=DROP), {"email"}),
        (user(suspended=DROP, lastaccess=DROP), {"is_suspended", "last_access_at"}),
        (user(username=DROP, firstname=DROP, lastname=DROP), {"username", "first_name", "last_name"}),
        # idnumber absent beside a username: the token sees idnumbers, this one is empty
        (user(idnumber=DROP), set()),
        # idnumber absent and no username: no user:viewalldetails, so it may be hidden
        (user(idnumber=DROP, username=DROP), {"id_number", "username"}),
    ],
)
def test_user_fields_moodle_leaves_out_are_withheld(row, withheld):
    assert set(map_moodle_user_row(row, synced_at=T).withheld) == withheld


@pytest.mark.parametrize(
    ("row", "withheld"),
    [
        (course(), set()),
        (course(idnumber=""), set()),  # an empty course idnumber is sent as ""
        (course(idnumber=DROP), {"id_number"}),  # no course:update
        (course(visible=DROP, startdate=DROP, enddate=DROP), {"is_visible", "start_at", "end_at"}),  # no course:view
        (course(customfields=DROP), {"price", "currency"}),
        (course(customfields=[{"shortname": "currency", "valueraw": "EUR"}]), {"price", "currency"}),
        (course(customfields=[{"shortname": "price", "type": "number", "valueraw": None}]), set()),  # listed, empty
        (course(summary=DROP, summaryformat=DROP), {"summary", "summary_format"}),
    ],
)
def test_course_fields_moodle_leaves_out_are_withheld(row, withheld):
    assert set(map_moodle_course_row(row, synced_at=T).withheld) == withheld


def test_category_visibility_and_enrolment_fields_can_be_withheld():
    assert map_moodle_category_row(category(visible=DROP), synced_at=T).withheld == {"is_visible"}
    assert map_moodle_category_row(category(), synced_at=T).withheld == frozenset()
    row = enrolled(lastcourseaccess=DROP)
    record = map_moodle_enrollment_row(row, moodle_course_id=2, is_active=True, synced_at=T)
    assert record.withheld == {"last_access_at"} and record.roles == "student"


def test_guest_is_recognised_by_id_without_a_username():
    """A token without moodle/user:viewalldetails gets the guest row without `username`."""
    with pytest.raises(GuestUserExcluded):
        map_moodle_user_row({"id": 1, "firstname": "Guest user", "lastname": " ", "email": "root@localhost"})
    with pytest.raises(GuestUserExcluded):
        map_moodle_enrollment_row({"id": 1}, moodle_course_id=2, is_active=True)


# ------------------------------------------------------------ batches and records


def test_map_rows_counts_and_never_raises():
    rows = [course(), {"id": 1, "format": "site", "shortname": "s", "fullname": "S"}, None, "x",
            course(id=43, visible="nope"), course(id=44)]
    batch = map_rows(map_moodle_course_row, rows, default_currency="EUR")
    assert [r.moodle_course_id for r in batch.records] == [42, 44]
    assert batch.skipped == 1 and batch.skipped_rows[0].moodle_id == 1
    assert [r.moodle_id for r in batch.rejected] == [None, None, 43]
    assert batch.fetched == 6
    assert len({r.synced_at for r in batch.records}) == 1  # one "now" per batch
    assert batch.records[0].synced_at.tzinfo is not None


@pytest.mark.parametrize("rows", [None, "rows", {"courses": []}, 42, b"x"])
def test_map_rows_with_a_non_list(rows):
    batch = map_rows(map_moodle_course_row, rows)
    assert batch.records == [] and len(batch.rejected) == 1 and "expected a list" in batch.rejected[0].reason


def test_map_rows_accepts_any_iterable():
    batch = map_rows(map_moodle_category_row, (category(id=i, path=f"/2/{i}") for i in (5, 6)))
    assert [r.moodle_category_id for r in batch.records] == [5, 6]


def test_map_rows_duplicates_and_shared_emails():
    rows = [user(id=3, email="A@x.org"), user(id=3), user(id=4, email="a@X.org "), user(id=5, email="")]
    batch = map_rows(map_moodle_user_row, rows, synced_at=T)
    assert [r.moodle_user_id for r in batch.records] == [3, 5]
    assert [r.moodle_id for r in batch.rejected] == [3, 4]
    assert "duplicate" in batch.rejected[0].reason
    assert "already belongs to Moodle user 3" in batch.rejected[1].reason
    enrol = map_rows(map_moodle_enrollment_row, [enrolled(), enrolled()], moodle_course_id=3, is_active=True)
    assert len(enrol.records) == 1 and len(enrol.rejected) == 1


def test_synced_at_handling():
    record = map_moodle_user_row(user())
    assert record.synced_at.tzinfo is not None and abs(datetime.now(timezone.utc) - record.synced_at) < timedelta(minutes=1)
    cet = timezone(timedelta(hours=1))
    record = map_moodle_user_row(user(), synced_at=datetime(2026, 1, 1, 13, tzinfo=cet))
    assert record.synced_at == datetime(2026, 1, 1, 12, tzinfo=timezone.utc) and record.synced_at.utcoffset() == timedelta(0)
    with pytest.raises(TypeError):
        map_moodle_user_row(user(), synced_at=datetime(2026, 1, 1))


def test_records_are_frozen_comparable_and_exportable():
    record = map_moodle_course_row(course(), synced_at=T)
    with pytest.raises(AttributeError):
        record.price = Decimal(1)  # type: ignore[misc]
    assert record == map_moodle_course_row(course(), synced_at=T)
    assert hash(record) == hash(map_moodle_course_row(course(), synced_at=T))
    data = record.as_dict()
    assert list(data) == [f for f in CourseRecord.__dataclass_fields__ if f != "withheld"]
    assert data["price"] == Decimal(10) and data["currency"] == "EUR" and data["is_active"] is True
    assert not hasattr(record, "__dict__")
    assert isinstance(map_moodle_category_row(category(), synced_at=T), CategoryRecord)


def test_rejection_is_a_value_error_and_pickles():
    with pytest.raises(ValueError):
        map_moodle_course_row(course(visible="x"))
    exc = RowRejected(7, "bad thing")
    again = pickle.loads(pickle.dumps(exc))
    assert (again.moodle_id, again.reason, str(again)) == (7, "bad thing", "row 7: bad thing")
    skipped = pickle.loads(pickle.dumps(SiteCourseExcluded(1, "site")))
    assert isinstance(skipped, RowSkipped) and isinstance(skipped, RowRejected)
    assert MappedBatch().fetched == 0 and Rejection(None, "x").moodle_id is None
