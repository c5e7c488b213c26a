"""Replays every real Moodle 5.0.6+ capture against the emulator loaded with the same data.

For each ``tests/fixtures/real-moodle/*.json`` the request is sent over HTTP exactly as
captured (method, form/query params, tokens; ``REDACTED`` becomes the emulator token) to
an emulator configured like the real site at capture time (``debug_*`` captures: debugging
on; ``*webservices_disabled*``/``*protocol_disabled*``: web services off). We compare:

* the HTTP status and the content type;
* JSON: the same keys in the same order (recursively), the same JSON types, and the same
  values — except values that depend on time or on the site URL (the URL host:port is
  rewritten; ``_lastloaded`` is the time of the call);
* XML and empty bodies: the same text after the same URL rewrite.

It also reports how many bodies are byte-identical to the capture after the URL rewrite.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import requests
from fixture_paths import manifest_names, real_moodle_names, real_moodle_path

from moodle_emulator import EmulatorServer

REAL_URL = "http://127.0.0.1:8089"
# Captures that are excluded from the match rate, with the reason. (None at the moment.)
EXCLUDED: dict[str, str] = {}


def _fixture_files() -> list[Path]:
    """Every capture file; a missing folder or file fails the test (fixture_paths)."""
    return [real_moodle_path(name) for name in real_moodle_names()]


def _mode(name: str) -> tuple[bool, bool]:
    debug = name.startswith("debug_")
    disabled = "webservices_disabled" in name or "protocol_disabled" in name
    return debug, disabled


def _normalize(value, url: str):
    if isinstance(value, str):
        return value.replace(REAL_URL, url)
    if isinstance(value, list):
        return [_normalize(v, url) for v in value]
    if isinstance(value, dict):
        return {k: _normalize(v, url) for k, v in value.items()}
    return value


VOLATILE_PREFS = {"_lastloaded"}


def _diff(real, emu, path: str = "$") -> list[str]:
    """Differences between two decoded JSON values: key order, types, values."""
    out: list[str] = []
    if type(real) is not type(emu):
        return [f"{path}: type {type(real).__name__} != {type(emu).__name__} ({real!r} vs {emu!r})"]
    if isinstance(real, dict):
        if list(real) != list(emu):
            out.append(f"{path}: keys {list(real)} != {list(emu)}")
        if real.get("name") in VOLATILE_PREFS and "value" in real:
            return out
        for k in real:
            if k in emu:
                out += _diff(real[k], emu[k], f"{path}.{k}")
    elif isinstance(real, list):
        if len(real) != len(emu):
            out.append(f"{path}: length {len(real)} != {len(emu)}")
        for i, (a, b) in enumerate(zip(real, emu)):
            out += _diff(a, b, f"{path}[{i}]")
    elif real != emu:
        out.append(f"{path}: {real!r} != {emu!r}")
    return out


@pytest.fixture(scope="module")
def emulators():
    """One emulator per site configuration seen in the captures."""
    emus = {}
    for debug in (False, True):
        for disabled in (False, True):
            emu = EmulatorServer(scale="real", token="fidelity-token", debug=debug).start()
            if disabled:
                emu.set_faults({"webservices_disabled": True})
            emus[(debug, disabled)] = emu
    yield emus
    for emu in emus.values():
        emu.stop()


def _replay(fx: dict, emu: EmulatorServer) -> requests.Response:
    req = fx["request"]
    params = []
    for k, v in req["params"].items():
        if k == "wstoken" and v == "REDACTED":
            v = emu.token
        params.append((k, v))
    url = emu.url + req["path"]
    if req["method"] == "GET":
        return requests.get(url, params=params, timeout=30)
    return requests.post(url, data=params, timeout=30)


def _compare(fx: dict, r: requests.Response, url: str) -> tuple[list[str], bool]:
    problems: list[str] = []
    if r.status_code != fx["status"]:
        problems.append(f"status {fx['status']} != {r.status_code}")
    real_ct = {k.lower(): v for k, v in fx["headers"].items()}.get("content-type", "")
    emu_ct = r.headers.get("Content-Type", "")
    if real_ct.split(";")[0] != emu_ct.split(";")[0]:
        problems.append(f"content-type {real_ct!r} != {emu_ct!r}")
    real_raw = fx["body_raw"]
    emu_raw = r.content.decode("utf-8")
    url_escaped = url.replace("/", "\\/")
    identical = real_raw.replace(REAL_URL.replace("/", "\\/"), url_escaped).replace(REAL_URL, url) == emu_raw
    if real_ct.startswith("application/json"):
        try:
            emu_json = json.loads(emu_raw)
        except ValueError:
            problems.append(f"emulator body is not JSON: {emu_raw[:200]!r}")
        else:
            problems += _diff(_normalize(json.loads(real_raw), url), emu_json)
    else:
        if real_raw.replace(REAL_URL, url) != emu_raw:
            problems.append(f"body differs:\n--- real\n{real_raw[:600]}\n--- emulator\n{emu_raw[:600]}")
    return problems, identical


def test_every_capture_matches(emulators, capsys):
    files = _fixture_files()
    results = {}
    identical = 0
    not_identical: list[str] = []
    for path in files:
        name = path.stem
        if name in EXCLUDED:
            continue
        fx = json.loads(path.read_text(encoding="utf-8"))
        emu = emulators[_mode(name)]
        r = _replay(fx, emu)
        problems, same_bytes = _compare(fx, r, emu.url)
        identical += same_bytes and not problems
        if not same_bytes:
            not_identical.append(name)
        results[name] = problems
    matched = [n for n, p in results.items() if not p]
    rate = len(matched) / len(results)
    with capsys.disabled():
        print(f"\nemulator fidelity: {len(matched)}/{len(results)} captures match ({rate:.1%}); "
              f"{identical} byte-identical after the URL rewrite "
              f"(not: {not_identical}); excluded: {sorted(EXCLUDED) or 'none'}")
        for name, problems in results.items():
            if problems:
                print(f"  MISMATCH {name}:")
                for p in problems[:8]:
                    print(f"    {p}")
    assert rate == 1.0, f"{len(results) - len(matched)} capture(s) differ: {[n for n, p in results.items() if p]}"


def test_fixture_set_is_complete():
    """Every capture of _index.json is replayed and its file exists (none silently skipped).

    That every file in the folder is listed by some manifest: tests/test_fixture_paths.py.
    """
    files = _fixture_files()  # fails on the first listed capture whose file is missing
    assert {p.stem for p in files} == set(manifest_names())
    assert len(files) >= 70


def test_diff_detects_key_order_type_and_value_changes():
    """The comparison itself can fail: key order, types and values are all checked."""
    assert _diff({"a": 1, "b": 2}, {"b": 2, "a": 1})
    assert _diff({"a": 1}, {"a": 1.0})
    assert _diff({"a": "x"}, {"a": "y"})
    assert _diff([1, 2], [1])
    assert not _diff({"a": [1, {"b": None}]}, {"a": [1, {"b": None}]})
    assert re.search("type", _diff({"a": None}, {"a": 0})[0])
