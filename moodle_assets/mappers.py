"""Pure mappers from raw Moodle web-service rows to typed records for the app database.

Everything here is a pure function of its arguments: no I/O, no clock unless you leave
``synced_at`` out, and no imports from the rest of the project (see the README's
"Architecture"). The record classes are what the store upserts.

Input rows are the decoded JSON objects Moodle returns:

* categories: ``core_course_get_categories`` items;
* courses: ``core_course_get_courses`` items, ``core_course_get_courses_by_field``
  ``courses[]`` items, and (without prices) ``core_enrol_get_users_courses`` items;
* users: ``core_user_get_users`` ``users[]``, ``core_user_get_users_by_field`` items, and
  ``core_enrol_get_enrolled_users`` items (fewer keys);
* enrollments: ``core_enrol_get_enrolled_users`` items plus the course id and the active
  flag the caller knows from the ``onlyactive=1`` pass.

Rules (fixed by docs/contracts.md, "Mapping rules"):

* A Unix timestamp of ``0`` is "none" (``None``); any other is a UTC-aware ``datetime``.
* Ints are accepted as JSON numbers or as canonical int strings (``"42"``, never ``"042"``,
  ``" 42"``, ``"4_2"`` or ``"42.0"``); an integral float (``42.0``) is accepted too.
* Bool-ish values: ``true``/``false``, ``0``/``1``, ``"0"``/``"1"``, ``"true"``/``"false"``.
* Optional keys that Moodle omits for lower capability tiers (``visible``, ``idnumber``,
  ``suspended``, dates...) map to ``None`` = unknown, never to ``False``.
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

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from html import unescape
from typing import Any

__all__ = [
    "RowRejected",
    "RowSkipped",
    "SiteCourseExcluded",
    "GuestUserExcluded",
    "CategoryRecord",
    "CourseRecord",
    "UserRecord",
    "EnrollmentRecord",
    "Rejection",
    "MappedBatch",
    "map_moodle_category_row",
    "map_moodle_course_row",
    "map_moodle_user_row",
    "map_moodle_enrollment_row",
    "extract_course_price",
    "parse_price",
    "parse_currency",
    "is_site_course",
    "is_guest_user",
    "map_rows",
    "SITE_COURSE_ID",
    "GUEST_USERNAME",
    "PRICE_MAX_SCALE",
    "PRICE_MAX_INTEGER_DIGITS",
]

UTC = timezone.utc

#: Moodle's SITEID: the front-page "course" that every site has. Not a catalog course.
SITE_COURSE_ID = 1
#: Username of Moodle's built-in guest account. Never synced.
GUEST_USERNAME = "guest"

#: The store keeps prices in NUMERIC(18, 4): at most 4 decimal places and 14 integer
#: digits. A price that does not fit is rejected here rather than silently rounded or
#: overflowing inside the store's transaction.
PRICE_MAX_SCALE = 4
PRICE_MAX_INTEGER_DIGITS = 14
_PRICE_LIMIT = Decimal(10) ** PRICE_MAX_INTEGER_DIGITS
_INT_PRICE_LIMIT = 10**PRICE_MAX_INTEGER_DIGITS
_FLOAT_PRICE_LIMIT = 1e13  # comfortably inside the limit whatever the float rounding

# Largest id/int we accept: the store's BIGINT.
_INT_MAX = 2**63 - 1
# Largest Unix time a datetime can hold (9999-12-31T23:59:59Z).
_TS_MAX = 253402300799


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


class RowRejected(ValueError):
    """A row that cannot be mapped.

    ``moodle_id`` is the row's Moodle id when it could be read (else ``None``);
    ``reason`` is a one-line human explanation, safe to log and to store.
    """

    def __init__(self, moodle_id: int | None, reason: str) -> None:
        super().__init__(
            f"row {moodle_id}: {reason}" if moodle_id is not None else f"row: {reason}"
        )
        self.moodle_id = moodle_id
        self.reason = reason

    def __reduce__(self):  # keep pickling (Dagster, multiprocessing) working
        return (type(self), (self.moodle_id, self.reason))


class RowSkipped(RowRejected):
    """A valid row that is deliberately not synced; batch code counts it as skipped."""


class SiteCourseExcluded(RowSkipped):
    """The Moodle site course (id 1, format ``site``) is not a catalog course."""


class GuestUserExcluded(RowSkipped):
    """Moodle's guest account is not synced."""


# --------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------


class _Record:
    __slots__ = ()

    def as_dict(self) -> dict[str, Any]:
        """Column name -> value, shallow (cheaper than ``dataclasses.asdict``)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}  # type: ignore[attr-defined]


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


# --------------------------------------------------------------------------------------
# Scalar helpers (each raises RowRejected with the row's id and the field's name)
# --------------------------------------------------------------------------------------

_MISSING: Any = object()
_CANONICAL_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,18})", re.ASCII)


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _to_int(value: Any) -> int | None:
    """The int a JSON value stands for, or None if it is not an int."""
    kind = type(value)
    if kind is int:
        return value
    if kind is str:
        if _CANONICAL_INT.fullmatch(value):
            return int(value)
        return None
    if kind is float and value.is_integer():
        return int(value)
    return None


def _int(value: Any, key: str, mid: int | None, *, minimum: int = 0) -> int:
    number = _to_int(value)
    if number is None:
        raise RowRejected(mid, f"{key} is not an integer: {_describe(value)}")
    if number < minimum or number > _INT_MAX:
        raise RowRejected(mid, f"{key} out of range: {number}")
    return number


def _opt_int(row: Mapping, key: str, mid: int | None, *, minimum: int = 0) -> int | None:
    value = row.get(key)
    if value is None:
        return None
    return _int(value, key, mid, minimum=minimum)


def _row_id(row: Any) -> int | None:
    """Best-effort id for a rejection message; never raises."""
    if isinstance(row, dict):
        number = _to_int(row.get("id"))
        if number is not None and 0 < number <= _INT_MAX:
            return number
    return None


def _require_row(row: Any, what: str) -> int:
    """Check that ``row`` is an object with a valid positive ``id``; return the id."""
    if not isinstance(row, dict):
        raise RowRejected(None, f"{what} row is not a JSON object: {type(row).__name__}")
    value = row.get("id")
    if value is None:
        raise RowRejected(None, f"{what} row has no id")
    number = _to_int(value)
    if number is None:
        raise RowRejected(None, f"{what} id is not an integer: {_describe(value)}")
    if not 0 < number <= _INT_MAX:
        raise RowRejected(None, f"{what} id out of range: {number}")
    return number


_TRUE = {True: True, 1: True, "1": True, "true": True}
_FALSE = {False: False, 0: False, "0": False, "false": False}


def _opt_bool(row: Mapping, key: str, mid: int | None) -> bool | None:
    value = row.get(key)
    if value is None:
        return None
    kind = type(value)
    if kind is bool:
        return value
    if kind is int or kind is str:
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
    raise RowRejected(mid, f"{key} is not a boolean: {_describe(value)}")


def _ts(row: Mapping, key: str, mid: int | None) -> datetime | None:
    value = row.get(key)
    if value is None:
        return None
    number = _to_int(value)
    if number is None:
        raise RowRejected(mid, f"{key} is not a Unix timestamp: {_describe(value)}")
    if number == 0:
        return None
    if number < 0 or number > _TS_MAX:
        raise RowRejected(mid, f"{key} out of range: {number}")
    return datetime.fromtimestamp(number, UTC)


def _clean_str(value: str, key: str, mid: int | None) -> str:
    """Reject text a database cannot store (NUL, lone surrogates)."""
    if "\x00" in value:
        raise RowRejected(mid, f"{key} contains a NUL character")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise RowRejected(mid, f"{key} is not valid Unicode text") from None
    return value


def _raw_text(row: Mapping, key: str, mid: int | None) -> str | None:
    """Text kept exactly as sent (summary, idnumber, email before normalising)."""
    value = row.get(key)
    if value is None:
        return None
    if type(value) is not str:
        raise RowRejected(mid, f"{key} is not text: {type(value).__name__}")
    return _clean_str(value, key, mid)


def _human_text(row: Mapping, key: str, mid: int | None, *, required: bool = False) -> str | None:
    """Human text: HTML-unescaped, stripped. An int is accepted and written as digits."""
    value = row.get(key)
    if value is None:
        if required:
            raise RowRejected(mid, f"missing {key}")
        return None
    kind = type(value)
    if kind is int:
        value = str(value)
    elif kind is not str:
        raise RowRejected(mid, f"{key} is not text: {type(value).__name__}")
    if "&" in value:
        value = unescape(value)
    value = _clean_str(value, key, mid).strip()
    if required and not value:
        raise RowRejected(mid, f"empty {key}")
    return value


def _id_number(row: Mapping, mid: int | None) -> str | None:
    value = _raw_text(row, "idnumber", mid)
    return value if value else None


def _synced_at(value: datetime | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise TypeError("synced_at must be a timezone-aware datetime")
    return value if value.tzinfo is UTC else value.astimezone(UTC)


# --------------------------------------------------------------------------------------
# Prices
# --------------------------------------------------------------------------------------

# Plain machine notation: what Moodle's number field stores ("49.9", "1234.50", "0").
_PLAIN_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)
# "1,234" / "1.234": 1234 with a thousands separator in one locale, 1.234 in another. A
# wrong guess misprices by a factor of 1000, so such a text is rejected, whichever the
# separator. Any other evidence settles it: "0,500", "1234.567", "1.2340", "1,234.00",
# "1 234,567" and "1.234.567" are all unambiguous.
_AMBIGUOUS = re.compile(r"[1-9][0-9]{0,2}[.,][0-9]{3}", re.ASCII)
# Characters a human-typed amount may contain: digits, "." and ",", and the grouping
# marks seen in the wild: space, no-break space, narrow no-break space, thin space,
# apostrophe and right single quote (Swiss "1'234.50").
_SPACE_GROUPS = " \u00a0\u202f\u2009"
_QUOTE_GROUPS = "'\u2019"
_PRICE_CHARS = frozenset("0123456789.," + _SPACE_GROUPS + _QUOTE_GROUPS)
_DIGITS = frozenset("0123456789")


def _group_kind(char: str) -> str:
    if char in _SPACE_GROUPS:
        return " "
    if char in _QUOTE_GROUPS:
        return "'"
    return char


def _parse_grouped_integer(text: str, field_name: str, mid: int | None) -> str:
    """Digits of an integer part that may carry one kind of thousands separator."""
    if not text:
        raise RowRejected(mid, f"{field_name}: no digits before the decimal separator")
    kinds = {_group_kind(c) for c in text if c not in _DIGITS}
    if not kinds:
        return text
    if len(kinds) > 1:
        raise RowRejected(mid, f"{field_name}: mixed thousands separators")
    sep = kinds.pop()
    groups = [text]
    for original in {c for c in text if c not in _DIGITS}:
        groups = [part for g in groups for part in g.split(original)]
    # "1 234" splits into ["1", "234"]; every group after the first has exactly 3 digits.
    if not (1 <= len(groups[0]) <= 3) or any(len(g) != 3 for g in groups[1:]):
        raise RowRejected(
            mid, f"{field_name}: irregular digit grouping with {sep!r} separators"
        )
    return "".join(groups)


def _parse_price_text(text: str, field_name: str, mid: int | None) -> Decimal | None:
    """A price typed as text, in machine or common human notation. See parse_price."""
    text = text.strip()
    if not text:
        return None
    negative = False
    if text[0] == "-":
        negative = True
        text = text[1:]
    if _AMBIGUOUS.fullmatch(text):
        raise RowRejected(
            mid,
            f"{field_name} {text!r} is ambiguous: a thousands separator or a decimal"
            " separator; write it without the separator or with a fourth decimal",
        )
    if _PLAIN_DECIMAL.fullmatch(text):
        return _finish_price(Decimal(text), negative, field_name, mid)
    if len(text) > 64 or not text or not set(text) <= _PRICE_CHARS:
        raise RowRejected(mid, f"{field_name} is not a number: {_describe(text)}")
    dots, commas = text.count("."), text.count(",")
    if dots and commas:
        decimal_sep = "." if text.rfind(".") > text.rfind(",") else ","
        if text.count(decimal_sep) != 1:
            raise RowRejected(mid, f"{field_name} is not a number: {_describe(text)}")
    elif dots + commas == 0 or dots > 1 or commas > 1:
        decimal_sep = None  # none, or repeated "." / "," = thousands separators only
    else:
        # One lone "." or ",": the decimal separator ("49.90", "49,90", "0,500",
        # "1234,567"). The one case where it could just as well be a thousands separator,
        # 1-3 digits + separator + exactly 3 digits ("1,234", "1.234"), was rejected above.
        decimal_sep = "." if dots else ","
    if decimal_sep is None:
        whole, frac = text, ""
    else:
        whole, _, frac = text.partition(decimal_sep)
        if not frac or not set(frac) <= _DIGITS:
            raise RowRejected(mid, f"{field_name} is not a number: {_describe(text)}")
    digits = _parse_grouped_integer(whole, field_name, mid)
    if not set(digits) <= _DIGITS:
        raise RowRejected(mid, f"{field_name} is not a number: {_describe(text)}")
    return _finish_price(Decimal(f"{digits}.{frac}" if frac else digits), negative, field_name, mid)


def _finish_price(value: Decimal, negative: bool, field_name: str, mid: int | None) -> Decimal:
    if negative and value != 0:
        raise RowRejected(mid, f"{field_name} is negative: -{value}")
    return _check_price(value, field_name, mid)


def _check_price(value: Decimal, field_name: str, mid: int | None) -> Decimal:
    if not value.is_finite():
        raise RowRejected(mid, f"{field_name} is not a finite number: {value}")
    if value < 0:
        raise RowRejected(mid, f"{field_name} is negative: {value}")
    if value >= _PRICE_LIMIT:
        raise RowRejected(
            mid, f"{field_name} too large: {value} (max {PRICE_MAX_INTEGER_DIGITS} integer digits)"
        )
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -PRICE_MAX_SCALE:
        if value != value.quantize(Decimal(1).scaleb(-PRICE_MAX_SCALE)):
            raise RowRejected(
                mid,
                f"{field_name} has more than {PRICE_MAX_SCALE} decimal places: {value}",
            )
    if value.is_zero() and value.is_signed():
        value = value.copy_abs()  # "-0" is a price of 0
    return value


def parse_price(value: Any, *, field_name: str = "price", moodle_id: int | None = None) -> Decimal | None:
    """An exact ``Decimal`` for a custom field's ``valueraw``, or ``None`` when unset.

    * ``None`` and ``""`` (or white space) are unset; ``0`` is a real price (a free course).
    * JSON numbers: ints exactly; floats through ``Decimal(repr(x))``, never float
      arithmetic. Python's ``repr`` is the shortest string that reads back as the same
      double, and PHP's ``json_encode`` (serialize_precision -1) writes that very string, so
      ``49.9`` stays 49.9, not 49.89999999999999857891452847979962825775146484375.
      A ``Decimal`` (from ``json.loads(..., parse_float=Decimal)``) is taken as is.
    * Strings: machine notation (``"49.90"``) or common human notation with one kind of
      thousands separator and a decimal point or comma: ``"1,234.50"``, ``"1.234,50"``,
      ``"49,90"``, ``"1 234,50"``, ``"1'234.50"``, ``"1.234.567"``. A lone ``.`` or ``,``
      is the decimal separator, **except** 1-3 digits + separator + exactly 3 digits
      (``"1,234"``, ``"1.234"``, ``"12,500"``), which is **rejected as ambiguous**: it is
      1234 in one locale and 1.234 in another, and a wrong guess misprices by 1000x.
      Moodle's number field sends a JSON number, never such a text, so only hand-typed
      text fields can hit this. No signs other than a leading ``-`` (rejected unless the
      value is zero), no exponents, no currency symbols.
    * Rejected with a reason (``RowRejected``): negatives, NaN, infinities, booleans,
      other types, garbage, more than ``PRICE_MAX_SCALE`` decimal places or
      ``PRICE_MAX_INTEGER_DIGITS`` integer digits (the store's NUMERIC(18, 4)).
    """
    kind = type(value)
    if value is None:
        return None
    if kind is int:
        if 0 <= value < _INT_PRICE_LIMIT:  # fast path: nothing else to check
            return Decimal(value)
        return _check_price(Decimal(value), field_name, moodle_id)
    if kind is float:
        if not math.isfinite(value):
            raise RowRejected(moodle_id, f"{field_name} is not a finite number: {value}")
        text = repr(value)
        # fast path for what Moodle's number field sends ("49.9", "1234.5"): no exponent,
        # at most PRICE_MAX_SCALE decimals, positive and in range.
        if 0 < value < _FLOAT_PRICE_LIMIT and "e" not in text and len(text) - text.index(".") <= PRICE_MAX_SCALE + 1:
            return Decimal(text)
        return _check_price(Decimal(text), field_name, moodle_id)
    if kind is str:
        return _parse_price_text(value, field_name, moodle_id)
    if kind is Decimal:
        return _check_price(value, field_name, moodle_id)
    raise RowRejected(moodle_id, f"{field_name} is not a number: {type(value).__name__}")


def parse_currency(value: Any, *, field_name: str = "currency", moodle_id: int | None = None) -> str | None:
    """An upper-case three-letter code (A-Z), or ``None`` for ``None``/``""``; else RowRejected."""
    if value is None:
        return None
    if type(value) is not str:
        raise RowRejected(moodle_id, f"{field_name} is not text: {type(value).__name__}")
    code = value.strip().upper()
    if not code:
        return None
    if len(code) != 3 or not code.isascii() or not code.isalpha():
        raise RowRejected(
            moodle_id, f"{field_name} is not a 3-letter currency code: {_describe(value)}"
        )
    return code


def _custom_fields(course: Mapping, mid: int | None) -> list:
    fields = course.get("customfields")
    if fields is None:
        return []
    if type(fields) is not list:
        raise RowRejected(mid, f"customfields is not a list: {type(fields).__name__}")
    return fields


def extract_course_price(
    course: Any,
    price_field: str = "price",
    currency_field: str = "currency",
    default_currency: str | None = None,
) -> tuple[Decimal | None, str | None]:
    """``(price, currency)`` from a course row's ``customfields[]``.

    Fields are found by ``shortname``. The price is ``valueraw`` parsed by
    :func:`parse_price` (never the localized ``value``); ``None`` when the field is absent,
    ``null`` or ``""``. The currency is the currency field upper-cased (for a ``select``
    field its ``value``, the option label, since ``valueraw`` is an option index), else
    ``default_currency`` when a price is set; always ``None`` when the price is ``None``.
    A bad currency on a priced course is rejected; on an unpriced course it is ignored.
    """
    if not isinstance(course, dict):
        raise RowRejected(None, f"course row is not a JSON object: {type(course).__name__}")
    mid = _row_id(course)
    price_item = currency_item = None
    for index, item in enumerate(_custom_fields(course, mid)):
        if not isinstance(item, dict):
            raise RowRejected(mid, f"customfields[{index}] is not a JSON object")
        shortname = item.get("shortname")
        if shortname == price_field:
            if price_item is None:
                price_item = item
        elif shortname == currency_field and currency_item is None:
            currency_item = item
    if price_item is None:
        return None, None
    price = parse_price(price_item.get("valueraw"), field_name=price_field, moodle_id=mid)
    if price is None:
        return None, None
    currency = None
    if currency_item is not None:
        key = "value" if currency_item.get("type") == "select" else "valueraw"
        currency = parse_currency(currency_item.get(key), field_name=currency_field, moodle_id=mid)
    if currency is None and default_currency is not None:
        currency = parse_currency(default_currency, field_name="default currency", moodle_id=mid)
    return price, currency


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
    {map_moodle_category_row, map_moodle_course_row, map_moodle_user_row, map_moodle_enrollment_row}
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
    if mapper in _STAMPED and kwargs.get("synced_at") is None:
        kwargs["synced_at"] = datetime.now(UTC)
    records: list = []
    rejected: list[Rejection] = []
    skipped_rows: list[Rejection] = []
    if rows is None or isinstance(rows, (str, bytes, bytearray, dict)) or not isinstance(rows, Iterable):
        rejected.append(Rejection(None, f"expected a list of rows, got {type(rows).__name__}"))
        return MappedBatch(records, rejected, 0, skipped_rows)
    seen: dict[Any, int | None] = {}
    emails: dict[str, int] = {}
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
                    Rejection(_row_id(row), f"duplicate of an earlier row in this batch ({key})")
                )
                continue
            seen[key] = None
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
