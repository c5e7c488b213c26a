"""PHP-compatible JSON and Moodle REST XML encoding.

Moodle answers with plain ``json_encode($value)`` (no flags): compact separators, ``/``
escaped as ``\\/`` and every non-ASCII character as ``\\uXXXX``. ``json.dumps`` with
``ensure_ascii=True`` plus replacing ``/`` gives byte-identical output for the value
types Moodle returns (floats use the shortest round-trip form in both languages).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from xml.sax.saxutils import escape as _xml_escape

_encoder = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False)

# Lists longer than this are streamed item by item (chunked transfer) instead of being
# encoded in one piece: keeps peak memory flat for 100k-user responses.
STREAM_THRESHOLD = 2000
_BATCH = 500


class LazyRows:
    """A list of rows built on demand from ``keys`` (e.g. user ids) by ``build``.

    Handlers return this for results that can be huge (all users of a site) so that the
    rows are created batch by batch while streaming, never all at once.
    """

    __slots__ = ("keys", "build")

    def __init__(self, keys: list, build) -> None:
        self.keys = keys
        self.build = build

    def __len__(self) -> int:
        return len(self.keys)

    def __iter__(self):
        build = self.build
        for k in self.keys:
            yield build(k)

    def __getitem__(self, item):
        if isinstance(item, slice):
            return [self.build(k) for k in self.keys[item]]
        return self.build(self.keys[item])

    def __eq__(self, other):
        return list(self) == other


def rows(keys: list, build):
    """Materialised list when small, LazyRows when large."""
    if len(keys) <= STREAM_THRESHOLD:
        return [build(k) for k in keys]
    return LazyRows(keys, build)


_LISTS = (list, LazyRows)


def php_json(value) -> str:
    return _encoder.encode(value).replace("/", "\\/")


def php_json_bytes(value) -> bytes:
    return php_json(value).encode("ascii")


def _iter_list(items) -> Iterator[bytes]:
    yield b"["
    for start in range(0, len(items), _BATCH):
        part = ",".join(php_json(x) for x in items[start:start + _BATCH])
        yield (("," if start else "") + part).encode("ascii")
    yield b"]"


def is_large(value) -> bool:
    if isinstance(value, _LISTS):
        return isinstance(value, LazyRows) or len(value) > STREAM_THRESHOLD
    if isinstance(value, dict):
        return any(isinstance(v, _LISTS) and (isinstance(v, LazyRows) or len(v) > STREAM_THRESHOLD)
                   for v in value.values())
    return False


def iter_php_json(value) -> Iterator[bytes]:
    """Yield the PHP-style JSON encoding of ``value`` in pieces (same bytes as php_json)."""
    if isinstance(value, _LISTS):
        yield from _iter_list(value)
        return
    if isinstance(value, dict):
        yield b"{"
        first = True
        for k, v in value.items():
            yield ((("" if first else ",") + php_json(str(k)) + ":").encode("ascii"))
            first = False
            if isinstance(v, _LISTS):
                yield from _iter_list(v)
            else:
                yield php_json_bytes(v)
        yield b"}"
        return
    yield php_json_bytes(value)


# ---------------------------------------------------------------- XML (moodlewsrestformat != json)

XML_HEAD = '<?xml version="1.0" encoding="UTF-8" ?>\n'


def _xml_value(value, out: list[str], keys_hint: dict | None = None) -> None:
    if isinstance(value, dict):
        out.append("<SINGLE>\n")
        keys = list(value.keys())
        if keys_hint and "__keys__" in keys_hint:
            keys = keys_hint["__keys__"]
        for k in keys:
            out.append(f'<KEY name="{k}">')
            _xml_value(value.get(k), out, (keys_hint or {}).get(k))
            out.append("</KEY>\n")
        out.append("</SINGLE>\n")
    elif isinstance(value, _LISTS):
        out.append("<MULTIPLE>\n")
        for item in value:
            _xml_value(item, out, keys_hint)
        out.append("</MULTIPLE>\n")
    elif value is None:
        out.append('<VALUE null="null"/>\n')
    else:
        if isinstance(value, bool):
            value = int(value)
        out.append("<VALUE>" + _xml_escape(str(value), {'"': "&quot;"}) + "</VALUE>\n")


def xml_response(value, keys_hint: dict | None = None) -> bytes:
    """Moodle's REST XML for a successful call.

    ``keys_hint`` gives the full description key order for structures whose optional keys
    XML lists as ``<VALUE null="null"/>`` when absent (JSON omits them). Only site_info
    provides one (see functions.SITE_INFO_XML_KEYS).
    """
    out = [XML_HEAD, "<RESPONSE>\n"]
    if value is not None:
        _xml_value(value, out, keys_hint)
    out.append("</RESPONSE>\n")
    return "".join(out).encode("utf-8")


def xml_error(body: dict) -> bytes:
    cls = body["exception"]
    parts = [XML_HEAD, f'<EXCEPTION class="{cls}">\n']
    if "errorcode" in body:
        parts.append("<ERRORCODE>" + _xml_escape(body["errorcode"]) + "</ERRORCODE>\n")
    parts.append("<MESSAGE>" + _xml_escape(body["message"]) + "</MESSAGE>\n")
    if "debuginfo" in body:
        parts.append("<DEBUGINFO>" + _xml_escape(body["debuginfo"]) + "</DEBUGINFO>\n")
    parts.append("</EXCEPTION>\n")
    return "".join(parts).encode("utf-8")
