"""Field-level readers shared by the row mappers: ints, bools, timestamps, text, ids.

Each raises :class:`RowRejected` naming the key and the row's Moodle id."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from html import unescape
from typing import Any

from .errors import RowRejected

UTC = UTC

# Largest id/int we accept: the store's BIGINT.
_INT_MAX = 2**63 - 1
# Largest Unix time a datetime can hold (9999-12-31T23:59:59Z).
_TS_MAX = 253402300799


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


# True == 1 and False == 0 as dict keys, so the JSON numbers 1/0 match the bool keys.
_TRUE = {True: True, "1": True, "true": True}
_FALSE = {False: False, "0": False, "false": False}


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
