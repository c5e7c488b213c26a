"""Property tests: no mapper raises anything but RowRejected on any JSON-like input; price
parsing round-trips decimals exactly through several human notations; timestamps
round-trip."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moodle_assets.mappers import (
    PRICE_MAX_INTEGER_DIGITS,
    PRICE_MAX_SCALE,
    CategoryRecord,
    CourseRecord,
    EnrollmentRecord,
    MappedBatch,
    RowRejected,
    UserRecord,
    extract_course_price,
    map_moodle_category_row,
    map_moodle_course_row,
    map_moodle_enrollment_row,
    map_moodle_user_row,
    map_rows,
    parse_price,
)

T = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
PROPS = settings(
    max_examples=300, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ---------------------------------------------------------------- JSON-like values

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-2, max_value=2)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["", "0", "1", "42", "-1", "true", "false", "&amp;", "1,234", "49,90",
                       "EUR", "eur", "guest", "site", "a\x00b", "\ud800", "9" * 40, "1e5", "NaN"])
)
json_like = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)

def mostly(good, bad=json_like):
    """Plausible values five times out of six, anything JSON-like otherwise, so the
    generated rows reach the deep paths (prices, roles) and not only the id check."""
    return st.integers(min_value=0, max_value=5).flatmap(lambda i: bad if i == 0 else good)


ids = mostly(
    st.integers(min_value=1, max_value=50) | st.sampled_from(["7", 7.0]),
    st.sampled_from([0, -1, "07", " 7", 7.5, 2**64, "", None]) | json_like,
)
texts = mostly(
    st.text(max_size=20) | st.sampled_from(["Caf&eacute; &amp; Co", " padded ", "", "a,b", "x\x00y"]),
)
stamps = mostly(
    st.integers(min_value=0, max_value=253402300799) | st.sampled_from([0, "0", "1795713798"]),
    st.sampled_from([-5, 10**13, "1.5", 1.5]) | json_like,
)
boolish = mostly(st.sampled_from([0, 1, "0", "1", True, False, "true", "false"]), st.sampled_from([2, "yes"]) | json_like)
prices = mostly(
    st.decimals(allow_nan=True, allow_infinity=True, places=None)
    | st.floats()
    | st.integers(min_value=-10, max_value=10**15)
    | st.sampled_from(["49,90", "1,234.50", "1.234,50", "1 234,50", "1,234", "-5", "", None, "abc", 0]),
)
currencies = mostly(st.sampled_from(["EUR", "usd", " chf ", "", None, "EURO", "€"]) | st.text(max_size=4))
custom_field = mostly(
    st.fixed_dictionaries(
        {"shortname": mostly(st.sampled_from(["price", "currency", "pricetext", "other"]))},
        optional={
            "valueraw": st.one_of(prices, currencies),
            "value": texts,
            "type": mostly(st.sampled_from(["number", "text", "select"])),
        },
    )
)
roles = mostly(
    st.lists(
        mostly(st.fixed_dictionaries(
            {"shortname": mostly(st.sampled_from(["student", "editingteacher", "teacher", " manager ", ""]), texts)},
            optional={"name": texts, "roleid": ids, "sortorder": ids},
        )),
        max_size=4,
    )
)


def row_of(required, optional):
    return st.fixed_dictionaries(required, optional=optional)


course_rows = row_of(
    {"id": ids, "shortname": texts, "fullname": texts},
    {
        "categoryid": ids, "category": ids, "summary": texts, "summaryformat": ids,
        "format": mostly(st.sampled_from(["site", "topics", "weeks"])), "idnumber": texts,
        "visible": boolish, "startdate": stamps, "enddate": stamps,
        "customfields": mostly(st.lists(custom_field, max_size=4)),
    },
)
@st.composite
def category_rows(draw):
    row = draw(row_of(
        {"id": ids, "name": texts, "parent": mostly(st.integers(min_value=0, max_value=9)),
         "depth": mostly(st.integers(min_value=1, max_value=4)), "sortorder": ids},
        {"visible": boolish, "idnumber": texts},
    ))
    own = row["id"]
    row["path"] = draw(mostly(
        st.sampled_from([f"/{own}", f"/2/{own}", f"/1/2/{own}"]),
        st.sampled_from(["/2/3", "x", "/0", f"{own}", f"/{own}/"]) | json_like,
    ))
    return row


user_rows = row_of(
    {"id": ids},
    {"username": mostly(st.sampled_from(["guest", "alice"]), texts), "firstname": texts,
     "lastname": texts, "email": mostly(st.emails() | st.sampled_from(["", " A@B.C "]), texts),
     "idnumber": texts, "suspended": boolish, "lastaccess": stamps},
)
enrolled_rows = row_of(
    {"id": ids},
    {"username": mostly(st.sampled_from(["guest", "bob"]), texts), "roles": roles, "lastcourseaccess": stamps},
)


def map_or_reject(mapper, row, **kwargs):
    try:
        return mapper(row, **kwargs)
    except RowRejected as exc:
        assert isinstance(exc.reason, str) and exc.reason
        assert exc.moodle_id is None or (type(exc.moodle_id) is int and exc.moodle_id > 0)
        return None


def check_common(record):
    assert record.is_active is True or type(record) is EnrollmentRecord
    assert record.synced_at == T
    for name in record.__dataclass_fields__:
        value = getattr(record, name)
        if isinstance(value, datetime):
            assert value.tzinfo is not None
        if isinstance(value, str):
            assert "\x00" not in value
            value.encode("utf-8")


@PROPS
@given(st.one_of(course_rows, json_like), st.sampled_from([None, "chf", "EUR"]))
def test_course_mapper_only_rejects(row, default_currency):
    record = map_or_reject(map_moodle_course_row, row, default_currency=default_currency, synced_at=T)
    if record is None:
        return
    assert type(record) is CourseRecord
    check_common(record)
    assert record.moodle_course_id > 1
    assert record.price is None or (type(record.price) is Decimal and record.price >= 0)
    if record.price is None:
        assert record.currency is None
    if record.currency is not None:
        assert re.fullmatch("[A-Z]{3}", record.currency)
    assert record.shortname and record.fullname
    assert record.id_number != ""


@PROPS
@given(st.one_of(category_rows(), json_like))
def test_category_mapper_only_rejects(row):
    record = map_or_reject(map_moodle_category_row, row, synced_at=T)
    if record is not None:
        assert type(record) is CategoryRecord
        check_common(record)
        assert record.parent_moodle_category_id != 0
        assert record.path.endswith(f"/{record.moodle_category_id}")


@PROPS
@given(st.one_of(user_rows, json_like))
def test_user_mapper_only_rejects(row):
    record = map_or_reject(map_moodle_user_row, row, synced_at=T)
    if record is not None:
        assert type(record) is UserRecord
        check_common(record)
        assert record.username != "guest"
        assert record.email is None or (record.email == record.email.strip().lower() and record.email)


@PROPS
@given(st.one_of(enrolled_rows, json_like), st.integers(min_value=1, max_value=9), st.booleans())
def test_enrollment_mapper_only_rejects(row, course_id, active):
    record = map_or_reject(map_moodle_enrollment_row, row, moodle_course_id=course_id, is_active=active, synced_at=T)
    if record is not None:
        assert type(record) is EnrollmentRecord
        check_common(record)
        assert record.moodle_course_id == course_id != 1 and record.is_active is active
        if record.roles is not None:
            parts = record.roles.split(",")
            assert parts == sorted(set(parts)) and all(p and p == p.strip() for p in parts)


@PROPS
@given(st.one_of(course_rows, json_like), st.sampled_from(["price", "pricetext"]))
def test_extract_course_price_only_rejects(row, field):
    try:
        price, currency = extract_course_price(row, price_field=field)
    except RowRejected:
        return
    assert price is None or type(price) is Decimal
    assert currency is None or re.fullmatch("[A-Z]{3}", currency)


@PROPS
@given(st.lists(st.one_of(course_rows, user_rows, json_like), max_size=6) | json_like)
def test_map_rows_never_raises(rows):
    for mapper, kwargs in (
        (map_moodle_course_row, {}),
        (map_moodle_category_row, {}),
        (map_moodle_user_row, {}),
        (map_moodle_enrollment_row, {"moodle_course_id": 3, "is_active": True}),
    ):
        batch = map_rows(mapper, rows, **kwargs)
        assert type(batch) is MappedBatch
        if isinstance(rows, list):
            assert batch.fetched == len(rows)
        assert batch.skipped == len(batch.skipped_rows)


# ---------------------------------------------------------------- price round-trips

money = st.builds(
    lambda whole, frac, scale: Decimal(whole) + Decimal(frac % 10**scale).scaleb(-scale),
    st.integers(min_value=0, max_value=10**PRICE_MAX_INTEGER_DIGITS - 1)
    | st.integers(min_value=0, max_value=99_999),
    st.integers(min_value=0, max_value=10**PRICE_MAX_SCALE),
    st.integers(min_value=0, max_value=PRICE_MAX_SCALE),
)


def styles(value: Decimal) -> dict[str, str]:
    plain = f"{value:f}"
    en = f"{value:,f}"  # 1,234,567.89
    swap = en.translate(str.maketrans(",.", ".,"))  # 1.234.567,89
    return {
        "plain": plain,
        "plain-comma": plain.replace(".", ","),
        "en": en,
        "de": swap,
        "fr-nbsp": en.replace(",", "\u00a0").replace(".", ","),
        "fr-narrow": en.replace(",", "\u202f").replace(".", ","),
        "space-dot": en.replace(",", " "),
        "swiss": en.replace(",", "'"),
        "padded": f"  {plain}\t",
    }


AMBIGUOUS = re.compile(r"[1-9][0-9]{0,2}[.,][0-9]{3}")


@settings(max_examples=400, deadline=None, derandomize=True)
@given(money)
def test_price_round_trips_exactly(value):
    for style, text in styles(value).items():
        if AMBIGUOUS.fullmatch(text.strip()):
            # "1,234" / "1.234": refused rather than guessed
            try:
                parse_price(text)
            except RowRejected as exc:
                assert "ambiguous" in exc.reason
            else:
                raise AssertionError(f"{style} {text!r} should be rejected as ambiguous")
            continue
        assert parse_price(text) == value, (style, text)
    # and as JSON numbers / exact decimals
    assert parse_price(value) == value
    if value == value.to_integral_value():
        assert parse_price(int(value)) == value
    if len(value.as_tuple().digits) <= 15:  # exactly representable digits survive repr()
        assert parse_price(float(value)) == value


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.integers(min_value=0, max_value=253402300799))
def test_timestamps_round_trip(seconds):
    for raw in (seconds, str(seconds)):
        record = map_moodle_user_row({"id": 3, "lastaccess": raw}, synced_at=T)
        if seconds == 0:
            assert record.last_access_at is None
        else:
            assert record.last_access_at.tzinfo is not None
            assert int(record.last_access_at.timestamp()) == seconds
            assert record.last_access_at.timestamp() == seconds


@PROPS
@given(prices, currencies, st.sampled_from([None, "EUR"]))
def test_course_price_and_currency(raw_price, raw_currency, default_currency):
    row = {
        "id": 9, "shortname": "C", "fullname": "Course", "categoryid": 2,
        "customfields": [
            {"shortname": "price", "type": "number", "valueraw": raw_price, "value": "localized"},
            {"shortname": "currency", "type": "text", "valueraw": raw_currency},
        ],
    }
    try:
        record = map_moodle_course_row(row, default_currency=default_currency, synced_at=T)
    except RowRejected as exc:
        assert exc.moodle_id == 9 and ("price" in exc.reason or "currency" in exc.reason)
        return
    assert record.price == parse_price(raw_price)
    if record.price is None:
        assert record.currency is None
    else:
        assert record.currency in (None, default_currency) or re.fullmatch("[A-Z]{3}", record.currency)
        assert record.currency is not None or default_currency is None
