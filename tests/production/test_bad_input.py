"""Bad input over real HTTP against the production web process (split deployment, PostgreSQL):
the HTTP trigger and the admin forms fuzzed with hypothesis. Never a 5xx, never a run without
the secret (history table and Dagster run count checked), always a precise 4xx.

Requests are written byte for byte (http.client, or a raw socket for framing tricks), so
duplicate and odd-cased headers, lying Content-Types and broken bodies reach the server as sent.
"""
from __future__ import annotations

import http.client
import json
import re
import socket
from collections import Counter
from urllib.parse import urlencode, urlsplit

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from moodle_assets.web.common import MAX_BODY_BYTES
from production_stack import ADMIN, SYNC_SECRET, TARGETS, TRIGGER, WEB_TOKEN

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=False)
TRIED: Counter = Counter()  # for the report: how many inputs of each kind were sent


def send(base: str, method: str, path: str, headers: list[tuple[str, str]], body: bytes | None = None) -> tuple[int, dict, bytes]:
    """One request exactly as given (header order, case and duplicates kept)."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", parts.netloc)
        for name, value in headers:
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def send_raw(base: str, raw: bytes) -> int:
    """Bytes on a socket; the status code of whatever comes back (0: connection closed)."""
    parts = urlsplit(base)
    with socket.create_connection((parts.hostname, parts.port), timeout=15) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    match = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return int(match.group(1)) if match else 0


@pytest.fixture
def web(prod):
    """The stack with every target disabled (so a body-less trigger launches nothing) and the
    counters this suite guards: history rows and Dagster runs must not move."""
    from moodle_assets.core.targets import SyncTarget
    from schedules.config_table import update_config

    for target in SyncTarget:
        update_config(prod.engine, target, enabled=False)
    rows, runs = len(prod.history()), prod.dagster_run_count()
    yield prod
    assert len(prod.history()) == rows, "a bad request wrote to the sync history"
    assert prod.dagster_run_count() == runs, "a bad request launched a Dagster run"


def assert_json_error(status: int, headers: dict, body: bytes) -> str:
    assert headers.get("content-type", "").startswith("application/json"), (status, headers, body[:200])
    error = json.loads(body)["error"]
    assert isinstance(error, str) and error
    assert SYNC_SECRET not in body.decode("utf-8", "replace")
    return error


# --- the trigger without the secret -----------------------------------------------------------

def near_misses(secret: str) -> st.SearchStrategy[str]:
    return st.sampled_from([
        secret[:-1], secret + "x", secret.upper(), " " + secret[1:], secret[::-1], secret[: len(secret) // 2],
        secret + "\t" + secret, "Bearer " + secret, secret.replace("-", "_"), "", "null", "undefined",
    ])


WRONG = st.one_of(near_misses(SYNC_SECRET), st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=80))

AUTH_TRICKS = st.one_of(
    st.just([]),
    st.lists(st.tuples(st.sampled_from(["x-sync-secret", "X-SYNC-SECRET", "X-Sync-Secret"]), WRONG), min_size=1, max_size=3),
    st.lists(st.tuples(st.sampled_from(["Authorization", "authorization", "AUTHORIZATION"]),
                       st.one_of(WRONG.map(lambda w: f"Bearer {w}"), WRONG.map(lambda w: f"bearer {w}"),
                                 st.just(f"Basic {SYNC_SECRET}"), st.just(f"Token {SYNC_SECRET}"),
                                 st.just(f"Bearer{SYNC_SECRET}"), st.just(SYNC_SECRET), st.just("Bearer"))),
             min_size=1, max_size=3),
    # the secret in places that are not the contract
    st.sampled_from([
        [("x-sync-secrets", SYNC_SECRET)], [("x-sync_secret", SYNC_SECRET)], [("X-Api-Key", SYNC_SECRET)],
        [("Cookie", f"x-sync-secret={SYNC_SECRET}")], [("Proxy-Authorization", f"Bearer {SYNC_SECRET}")],
        [("x-sync-secret", "wrong"), ("Authorization", f"Bearer {SYNC_SECRET}")],  # the header wins, and it is wrong
        [("x-sync-secret", f"{SYNC_SECRET}, {SYNC_SECRET}")],
    ]),
)

BODIES = st.one_of(
    st.none(),
    st.binary(max_size=300),
    st.just(json.dumps({"targets": list(TARGETS), "force": True}).encode()),
    st.just(json.dumps({"secret": SYNC_SECRET, "targets": ["COURSE_CATALOG"]}).encode()),
    st.just(b"x" * 20_000),
)


@FUZZ
@given(method=st.sampled_from(["POST", "POST", "POST", "GET", "PUT", "DELETE", "PATCH", "OPTIONS"]),
       auth=AUTH_TRICKS, body=BODIES,
       content_type=st.sampled_from([None, "application/json", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]),
       query=st.sampled_from(["", f"?secret={SYNC_SECRET}", f"?x-sync-secret={SYNC_SECRET}", "?targets=COURSE_CATALOG"]))
def test_trigger_without_the_secret_never_launches(web, method, auth, body, content_type, query):
    headers = list(auth) + ([("Content-Type", content_type)] if content_type else [])
    status, resp_headers, resp_body = send(web.url, method, TRIGGER + query, headers, body)
    TRIED["trigger without secret"] += 1
    if method != "POST":
        assert status == 405 and resp_headers.get("allow") == "POST", (status, resp_body[:200])
    else:
        assert status == 401, (status, auth, resp_body[:200])
        assert "bearer" in resp_headers.get("www-authenticate", "").lower()
    assert_json_error(status, resp_headers, resp_body)


# --- the trigger with the secret and a bad body -------------------------------------------------

JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
JSON_ANY = st.recursive(JSON_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)
GOOD_NAMES = st.sampled_from(list(TARGETS) + [t.lower() for t in TARGETS] + [f"sync_{t.lower()}" for t in TARGETS])
BAD_NAME = st.one_of(st.text(max_size=30), st.sampled_from(["COURSE CATALOG", "course-catalog", "ALL", "*", "sync_all", "COURSE_CATALOG\x00", "ＣＯＵＲＳＥ_ＣＡＴＡＬＯＧ", "course_catalog "]))


@st.composite
def bad_bodies(draw) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["not json", "not an object", "unknown key", "targets type", "empty targets",
                                 "unknown target", "target type", "force type", "deep nesting", "encoding", "too large"]))
    if kind == "not json":
        raw = draw(st.one_of(st.binary(min_size=1, max_size=200), st.sampled_from([b"{", b"{'targets': []}", b'{"targets": [COURSE_CATALOG]}', b"\xef\xbb\xbf{}", b'{"force": tru}', b"{}}"])))
        try:
            json.loads(raw)
            raw = b"{" + raw
        except (ValueError, RecursionError):
            pass
        if not raw.strip():
            raw = b"{"
        return kind, raw
    if kind == "not an object":
        value = draw(st.one_of(st.lists(JSON_ANY, max_size=3), st.integers(), st.text(max_size=10), st.booleans(), st.floats(allow_nan=False)))
        return kind, json.dumps(value).encode()
    if kind == "unknown key":
        key = draw(st.text(max_size=12).filter(lambda k: k not in ("targets", "force")))
        return kind, json.dumps({"targets": ["COURSE_CATALOG"], key: draw(JSON_ANY)}).encode()
    if kind == "targets type":
        value = draw(JSON_ANY.filter(lambda v: not isinstance(v, list) and v is not None))
        return kind, json.dumps({"targets": value}).encode()
    if kind == "empty targets":
        return kind, json.dumps({"targets": [], "force": draw(st.booleans())}).encode()
    if kind == "unknown target":
        names = draw(st.lists(GOOD_NAMES, max_size=2)) + [draw(BAD_NAME.filter(lambda n: n.strip().upper() not in TARGETS and n.strip().upper() not in {f"SYNC_{t}" for t in TARGETS}))]
        return kind, json.dumps({"targets": draw(st.permutations(names))}).encode()
    if kind == "target type":
        names = draw(st.lists(GOOD_NAMES, max_size=2)) + [draw(JSON_ANY.filter(lambda v: not isinstance(v, str)))]
        return kind, json.dumps({"targets": names}).encode()
    if kind == "force type":
        value = draw(JSON_ANY.filter(lambda v: not isinstance(v, bool)))
        return kind, json.dumps({"targets": ["COURSE_CATALOG"], "force": value}).encode()
    if kind == "deep nesting":
        depth = draw(st.integers(900, 5000))
        return kind, (b'{"targets": ' + b"[" * depth + b"]" * depth + b"}")
    if kind == "encoding":
        text = json.dumps({"targets": ["COURSE_CATALOG"], "force": "yes"})
        return kind, draw(st.sampled_from([text.encode("utf-16"), text.encode("utf-32"), b"\xff\xfe\x00", b'{"targets": ["\xc3\x28"]}', b'{"force": NaN}', b'{"force": Infinity}']))
    size = draw(st.integers(16 * 1024 + 1, 200_000))
    return kind, (b'{"targets": ["' + b"A" * size + b'"]}')


@FUZZ
@given(case=bad_bodies(), content_type=st.sampled_from(["application/json", "text/plain", None]),
       auth=st.sampled_from([[("x-sync-secret", SYNC_SECRET)], [("Authorization", f"Bearer {SYNC_SECRET}")],
                             [("X-SYNC-SECRET", SYNC_SECRET)], [("authorization", f"bearer {SYNC_SECRET}")]]))
def test_trigger_with_the_secret_and_a_bad_body_is_a_precise_400(web, case, content_type, auth):
    kind, body = case
    headers = list(auth) + ([("Content-Type", content_type)] if content_type else [])
    status, resp_headers, resp_body = send(web.url, "POST", TRIGGER, headers, body)
    TRIED[f"bad body: {kind}"] += 1
    error = assert_json_error(status, resp_headers, resp_body)
    if kind == "too large":
        assert status == 413, (status, error)
    else:
        assert status == 400, (kind, body[:120], status, error)
        expected = {
            "not json": ("json", "utf-8"), "not an object": ("json object",), "unknown key": ("unknown key",),
            "targets type": ("targets must be a list",), "empty targets": ("targets is empty",),
            "unknown target": ("target",), "target type": ("targets must contain strings",),
            "force type": ("force must be true or false",), "deep nesting": ("json", "nest", "targets"),
            "encoding": ("json", "utf-8", "force"),
        }[kind]
        assert any(word in error.lower() for word in expected), (kind, error)


def test_framing_tricks_never_a_5xx(web):
    """Malformed HTTP framing is refused by the server's parser or read safely."""
    host = urlsplit(web.url).netloc
    auth = f"x-sync-secret: {SYNC_SECRET}\r\n"
    cases = {
        "negative length": f"POST {TRIGGER} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Length: -1\r\n\r\n{{}}",
        "two lengths": f"POST {TRIGGER} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Length: 2\r\nContent-Length: 3\r\n\r\n{{}}",
        "length and chunked": f"POST {TRIGGER} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n",
        "huge chunked": f"POST {TRIGGER} HTTP/1.1\r\nHost: {host}\r\n{auth}Transfer-Encoding: chunked\r\n\r\n" + "4000\r\n" + "a" * 0x4000 + "\r\n" + "4000\r\n" + "a" * 0x4000 + "\r\n0\r\n\r\n",
        "lying length": f"POST {TRIGGER} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Length: 999999999\r\n\r\n{{}}",
        "header injection": f"POST {TRIGGER} HTTP/1.1\r\nHost: {host}\r\nx-sync-secret: wrong\rx-sync-secret: {SYNC_SECRET}\r\n\r\n",
        "no host": f"POST {TRIGGER} HTTP/1.1\r\n{auth}\r\n",
        "http/1.0": f"POST {TRIGGER} HTTP/1.0\r\n{auth}Content-Length: 1\r\n\r\n[",
        "garbage": "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS hello to a plain port",
    }
    seen = {}
    for name, raw in cases.items():
        status = send_raw(web.url, raw.encode("latin-1"))
        TRIED["framing trick"] += 1
        seen[name] = status
        assert status == 0 or 400 <= status < 500, (name, status)
    assert seen["lying length"] in (0, 413) and seen["huge chunked"] == 413 and seen["http/1.0"] == 400, seen
    assert seen["header injection"] in (0, 400, 401), seen


# --- the admin forms --------------------------------------------------------------------------

BEARER = [("Authorization", f"Bearer {WEB_TOKEN}")]


def csrf(web) -> tuple[str, str]:
    """(cookie nonce, form token) as a browser gets them from the admin page."""
    status, headers, body = send(web.url, "GET", ADMIN, BEARER)
    assert status == 200
    nonce = re.search(r"moodle_csrf=([^;]+)", headers["set-cookie"]).group(1)
    token = re.search(rb'name="csrf_token" value="([^"]+)"', body).group(1).decode()
    return nonce, token


def config_state(web) -> list:
    from schedules.config_table import list_configs

    return [(c.target, c.enabled, c.frequency_minutes) for c in list_configs(web.engine)]


FORM_VALUE = st.one_of(st.text(max_size=40), st.sampled_from(["0", "-1", "43201", "9" * 5000, "1e3", "0x10", "²", "١٢", "12 ", " 7", "1_000", "NaN", "+5", "5.0", ""]))


@FUZZ
@given(action=st.sampled_from(["settings", "run"]),
       target=st.one_of(st.sampled_from(list(TARGETS)), st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="/?#%"), min_size=1, max_size=20)),
       csrf_mode=st.sampled_from(["none", "cookie only", "token only", "wrong token", "foreign origin", "null origin", "no web token"]),
       fields=st.dictionaries(st.sampled_from(["enabled", "frequency_minutes", "csrf_token", "target", "force"]), FORM_VALUE, max_size=4),
       content_type=st.sampled_from(["application/x-www-form-urlencoded", "application/json", "multipart/form-data; boundary=zz", None]))
# Found by hypothesis in CI: four 5,000-character values make a form over the 16 KiB limit.
@example(action="settings", target="COURSE_CATALOG", csrf_mode="none",
         fields={k: "9" * 5000 for k in ("enabled", "frequency_minutes", "csrf_token", "target")},
         content_type="application/x-www-form-urlencoded")
def test_admin_forms_without_a_valid_csrf_token_change_nothing(web, action, target, csrf_mode, fields, content_type):
    nonce, token = csrf(web)
    before = config_state(web)
    headers = [] if csrf_mode == "no web token" else list(BEARER)
    form = dict(fields)
    if csrf_mode in ("token only", "wrong token", "foreign origin", "null origin", "no web token"):
        form["csrf_token"] = token if csrf_mode != "wrong token" else token[::-1]
    if csrf_mode in ("cookie only", "wrong token", "foreign origin", "null origin", "no web token"):
        headers.append(("Cookie", f"moodle_csrf={nonce}"))
    if csrf_mode == "foreign origin":
        headers.append(("Origin", "https://evil.example"))
    if csrf_mode == "null origin":
        headers.append(("Origin", "null"))
    if content_type:
        headers.append(("Content-Type", content_type))
    encoded = urlencode(form).encode()
    status, _, body = send(web.url, "POST", f"{ADMIN}/{target}/{action}", headers, encoded)
    TRIED["admin form without valid CSRF"] += 1
    if csrf_mode == "no web token":
        assert status == 401, (status, body[:200])  # the access token comes first
    elif len(encoded) > MAX_BODY_BYTES:
        # The size is checked before the CSRF token (admin._checked_post: method, size, CSRF, target).
        assert status == 413, (csrf_mode, content_type, len(encoded), status, body[:200])
    else:
        assert status == 403, (csrf_mode, content_type, status, body[:200])
    assert config_state(web) == before


@FUZZ
@given(target=st.sampled_from(list(TARGETS)), frequency=FORM_VALUE, enabled=st.sampled_from([None, "on", "off", "true", "", "1", "yes"]))
def test_admin_settings_with_bad_values_are_a_400_beside_the_field(web, target, frequency, enabled):
    from schedules.config_table import ConfigValidationError, parse_frequency

    try:
        parse_frequency(frequency)
        valid = True
    except (ConfigValidationError, ValueError):
        valid = False
    nonce, token = csrf(web)
    before = config_state(web)
    form = {"csrf_token": token, "frequency_minutes": frequency}
    if enabled is not None:
        form["enabled"] = enabled
    # A valid value would be saved (and may enable a schedule): only bad ones are sent enabled.
    if valid:
        form.pop("enabled", None)
    headers = BEARER + [("Cookie", f"moodle_csrf={nonce}"), ("Content-Type", "application/x-www-form-urlencoded")]
    status, resp_headers, body = send(web.url, "POST", f"{ADMIN}/{target}/settings", headers, urlencode(form).encode())
    TRIED["admin settings value"] += 1
    if valid:
        assert status == 303, (frequency, status, body[:300])
    else:
        assert status == 400, (frequency, status, body[:300])
        assert b"frequency" in body.lower()
        assert config_state(web) == before
    assert all(not enabled_now for _, enabled_now, _ in config_state(web))


def test_admin_unknown_target_with_a_valid_token_is_a_404(web):
    nonce, token = csrf(web)
    headers = BEARER + [("Cookie", f"moodle_csrf={nonce}"), ("Content-Type", "application/x-www-form-urlencoded")]
    for target in ["NOPE", "course_catalog", "SYNC_ALL", "..", "%2e%2e", "COURSE_CATALOG%00"]:
        for action in ("settings", "run"):
            status, _, _ = send(web.url, "POST", f"{ADMIN}/{target}/{action}", headers, urlencode({"csrf_token": token, "frequency_minutes": "5"}).encode())
            TRIED["admin unknown target"] += 1
            assert status == 404, (target, action, status)


@pytest.fixture(scope="module", autouse=True)
def report_inputs_tried():
    """After the module: how many bad inputs were sent, by kind (shown with `-s`; not a test)."""
    yield
    total = sum(TRIED.values())
    print(f"\nbad inputs tried: {total} " + json.dumps(dict(sorted(TRIED.items())), indent=None))
