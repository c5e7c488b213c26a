"""Course prices from Moodle course custom fields: strict parsing, never a guess."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from .errors import RowRejected
from .fields import _describe, _row_id

#: The store keeps prices in NUMERIC(18, 4): at most 4 decimal places and 14 integer
#: digits. A price that does not fit is rejected here rather than silently rounded or
#: overflowing inside the store's transaction.
PRICE_MAX_SCALE = 4
PRICE_MAX_INTEGER_DIGITS = 14
_PRICE_LIMIT = Decimal(10) ** PRICE_MAX_INTEGER_DIGITS
_INT_PRICE_LIMIT = 10**PRICE_MAX_INTEGER_DIGITS
_FLOAT_PRICE_LIMIT = 1e13  # comfortably inside the limit whatever the float rounding


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
        raise RowRejected(mid, f"{field_name}: irregular digit grouping with {sep!r} separators")
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
            mid,
            f"{field_name} too large: {value} (max {PRICE_MAX_INTEGER_DIGITS} integer digits)",
        )
    exponent = value.as_tuple().exponent
    too_fine = isinstance(exponent, int) and exponent < -PRICE_MAX_SCALE
    if too_fine and value != value.quantize(Decimal(1).scaleb(-PRICE_MAX_SCALE)):
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
            moodle_id,
            f"{field_name} is not a 3-letter currency code: {_describe(value)}",
        )
    return code


def _custom_fields(course: Mapping, mid: int | None) -> list:
    fields = course.get("customfields")
    if fields is None:
        return []
    if type(fields) is not list:
        raise RowRejected(mid, f"customfields is not a list: {type(fields).__name__}")
    return fields


def lists_custom_field(course: Any, shortname: str) -> bool:
    """Whether a course row's ``customfields`` list has the field ``shortname`` (with any value).

    Moodle lists every course custom field the token may see, with ``null``/``""`` when the
    course has no value, so an absent field was either not shown to this token (visibility
    "teachers" without ``moodle/course:update``) or does not exist. Never raises."""
    fields = course.get("customfields") if isinstance(course, dict) else None
    if type(fields) is not list:
        return False
    return any(isinstance(item, dict) and item.get("shortname") == shortname for item in fields)


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
