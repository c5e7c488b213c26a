"""The client against the bundled Moodle emulator over real HTTP: every error class, 429 bursts
with Retry-After (both forms), retry limits, the host throttle across two processes, and token
hygiene. Skipped (with the reason) until ``moodle_emulator.EmulatorServer`` exists."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest
import requests
from moodle_replay import SECRET_TOKEN, assert_token_free

from resources.moodle import (
    MoodleAccessError,
    MoodleAuthenticationError,
    MoodleClient,
    MoodleError,
    MoodleInvalidParameterError,
    MoodleMissingRecordError,
    MoodleRateLimitedError,
    MoodleResource,
    MoodleTransientError,
    MoodleWebServicesDisabledError,
)

from moodle_emulator import EmulatorServer


@pytest.fixture(scope="module")
def emu():
    with EmulatorServer(scale="real", token=SECRET_TOKEN) as server:
        yield server


def control(emu, path: str, payload=None):
    url = f"{emu.url}/__emulator__/{path}"
    r = requests.post(url, json=payload, timeout=5) if payload is not None or path.endswith("reset") else requests.get(url, timeout=5)
    r.raise_for_status()
    return r.json() if r.content else None


@pytest.fixture
def fresh(emu):
    control(emu, "faults", {})
    control(emu, "counters/reset", {})
    yield emu
    control(emu, "faults", {})


@pytest.fixture
def client(fresh, make_client):
    return make_client(fresh.url, base_delay_ms=10, max_delay_ms=40)


def counters(emu) -> dict:
    return control(emu, "counters")


def test_success_and_pagination(client):
    info = client.webservice_post("core_webservice_get_site_info")
    assert "release" in info and "functions" in info
    full = client.webservice_post("core_enrol_get_enrolled_users", {"courseid": 2})
    paged = client.get_enrolled_users(2, page_size=2)
    assert [u["id"] for u in paged] == [u["id"] for u in full] and len(full) > 2
    assert client.webservice_get("core_course_get_courses_by_field", {"field": "id", "value": 2})["courses"][0]["id"] == 2


def test_bad_token_is_authentication(fresh, make_client):
    bad = make_client(fresh.url, token="0123456789abcdef0123456789abcdef")
    with pytest.raises(MoodleAuthenticationError) as info:
        bad.webservice_post("core_webservice_get_site_info")
    assert info.value.errorcode == "invalidtoken"


@pytest.mark.parametrize(
    "wsfunction, params, cls, code_prefix",
    [
        ("core_enrol_get_enrolled_users", {}, MoodleInvalidParameterError, "invalidparameter"),
        ("core_webservice_get_site_info", {"foo": "bar"}, MoodleInvalidParameterError, "invalidparameter"),
        ("core_enrol_get_enrolled_users", {"courseid": 999999}, MoodleMissingRecordError, "invalidrecord"),
        ("core_nonexistent_function_xyz", {}, MoodleMissingRecordError, "invalidrecord"),
    ],
)
def test_moodle_errors(client, wsfunction, params, cls, code_prefix):
    with pytest.raises(cls) as info:
        client.webservice_post(wsfunction, params)
    assert info.value.errorcode.startswith(code_prefix) and info.value.attempts == 1
    assert_token_free(info.value)


def test_function_not_in_service_is_access(client):
    with pytest.raises(MoodleAccessError, match="not in the token's external service") as info:
        client.webservice_post("core_course_search_courses", {"criterianame": "search", "criteriavalue": "x"})
    assert info.value.errorcode == "accessexception" and info.value.exception == "webservice_access_exception"


def test_missing_capability_is_access(fresh, make_client):
    reader = make_client(fresh.url, token=SECRET_TOKEN + "-reader")
    with pytest.raises(MoodleAccessError) as info:
        reader.webservice_post("core_enrol_get_enrolled_users",
                               {"courseid": 2, "options": [{"name": "onlyactive", "value": True}]})
    assert info.value.errorcode == "nopermissions"
    assert_token_free(info.value)


def test_webservices_disabled(client, fresh):
    control(fresh, "faults", {"webservices_disabled": True})
    with pytest.raises(MoodleWebServicesDisabledError):
        client.webservice_post("core_webservice_get_site_info")


@pytest.mark.parametrize("fault", ["http_503", "http_502", "http_504", "drop_connection", "truncated_json",
                                   "http_429", "ratelimit_payload"])
def test_retryable_faults_are_ridden_out(client, fresh, fault):
    control(fresh, "faults", {"script": [{"fault": fault, "count": 2, "retry_after": 0}]})
    assert "release" in client.webservice_post("core_webservice_get_site_info")
    snap = client.snapshot()
    assert snap["retries"] == 2 and snap["requests_total"] == 3
    assert snap["responses_429"] == (2 if fault == "http_429" else 0)
    assert snap["ratelimit_payloads"] == (2 if fault == "ratelimit_payload" else 0)
    assert counters(fresh)["requests_total"] >= 3


@pytest.mark.parametrize("fault, cls", [("http_503", MoodleTransientError), ("http_429", MoodleRateLimitedError),
                                        ("ratelimit_payload", MoodleRateLimitedError),
                                        ("drop_connection", MoodleTransientError)])
def test_retries_stop_at_the_limit(fresh, make_client, fault, cls):
    client = make_client(fresh.url, max_retries=2, base_delay_ms=5, max_delay_ms=10)
    control(fresh, "faults", {"script": [{"fault": fault, "count": 10, "retry_after": 0}]})
    with pytest.raises(cls) as info:
        client.webservice_post("core_course_get_categories")
    assert info.value.attempts == 3 and "gave up after 3 attempts" in str(info.value)
    assert client.snapshot()["requests_total"] == 3
    assert_token_free(info.value)


def test_html_error_page(client, fresh):
    control(fresh, "faults", {"script": [{"fault": "html_error", "count": 1}]})
    with pytest.raises(MoodleTransientError, match="HTML"):
        client.webservice_post("core_course_get_categories")


@pytest.mark.parametrize("fmt", ["seconds", "http-date"])
def test_burst_of_429_with_retry_after_is_honoured(fresh, make_client, fmt):
    client = make_client(fresh.url, max_retries=3, base_delay_ms=20, max_delay_ms=40)
    control(fresh, "faults", {"script": [{"fault": "http_429", "count": 2, "retry_after": 1, "retry_after_format": fmt}]})
    started = time.monotonic()
    assert isinstance(client.webservice_post("core_course_get_categories"), list)
    elapsed = time.monotonic() - started
    # two waits of >= 1 s each (the computed backoff alone would be <= 40 ms)
    assert 1.9 <= elapsed <= 8.0, elapsed
    snap = client.snapshot()
    assert snap["responses_429"] == 2 and snap["retries"] == 2 and snap["backoff_seconds"] >= 1.9
    assert counters(fresh)["responses_429"] == 2


def test_retry_after_beyond_cap_fails_fast(fresh, make_client):
    client = make_client(fresh.url, retry_after_cap_ms=2000)
    control(fresh, "faults", {"script": [{"fault": "http_503", "count": 1, "retry_after": 120}]})
    started = time.monotonic()
    with pytest.raises(MoodleTransientError, match="retry after '120'"):
        client.webservice_post("core_course_get_categories")
    assert time.monotonic() - started < 1.0


CHILD = textwrap.dedent(
    """
    import json, sys, time
    from resources.moodle_client import MoodleClient, MoodleError
    url, token, tdir, n, rps, go = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
    c = MoodleClient(url, token, requests_per_second=rps, throttle_dir=tdir, max_retries=0)
    while time.time() < go:
        time.sleep(0.002)
    errors = 0
    for _ in range(n):
        try:
            c.webservice_post("core_webservice_get_site_info")
        except MoodleError as exc:
            errors += 1
    print(json.dumps({"errors": errors, **c.snapshot()}))
    """
)


def test_throttle_holds_two_processes_under_the_proxy_limit(fresh, throttle_dir):
    rps, each = 20, 20
    # burst 3: strict enough that two uncoordinated processes trip it (control test below),
    # loose enough that scheduling jitter on a loaded 2-core CI box does not.
    control(fresh, "faults", {"rate_limit": {"rps": rps, "burst": 3, "retry_after": "seconds"}})
    go = time.time() + 1.0  # both start together, after interpreter start-up
    procs = [
        subprocess.Popen([sys.executable, "-c", CHILD, fresh.url, SECRET_TOKEN, throttle_dir, str(each), str(rps), str(go)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    started = time.time()
    outs = [p.communicate(timeout=60) for p in procs]
    results = [json.loads(o[0]) for o in outs]
    c = counters(fresh)
    assert c["responses_429"] == 0, c
    assert all(r["errors"] == 0 and r["responses_429"] == 0 for r in results), results
    assert sum(r["requests_total"] for r in results) == 2 * each
    # together they took >= (2*each - 2 burst) / rps seconds: they shared one budget
    assert time.time() - started >= (2 * each - 2) / rps * 0.9
    for out, err in outs:
        assert SECRET_TOKEN not in out + err


def test_without_the_shared_throttle_two_processes_do_trip_the_limit(fresh, tmp_path):
    """Control experiment: separate throttle dirs = separate budgets -> 2x the rate -> 429s."""
    rps, each = 10, 10
    control(fresh, "faults", {"rate_limit": {"rps": rps, "burst": 3, "retry_after": "seconds"}})
    go = time.time() + 1.0
    procs = [
        subprocess.Popen([sys.executable, "-c", CHILD, fresh.url, SECRET_TOKEN, str(tmp_path / f"own{i}"), str(each),
                          str(rps), str(go)], stdout=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    for p in procs:
        p.communicate(timeout=60)
    assert counters(fresh)["responses_429"] > 0


def test_resource_for_emulator(fresh, throttle_dir):
    res = MoodleResource.for_emulator(fresh, requests_per_second=0, throttle_dir=throttle_dir)
    assert res.webservice_post("core_course_get_categories")
    assert isinstance(res.get_client(), MoodleClient)
