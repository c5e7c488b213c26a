"""Fault injection, rate limiting, mutations, counters, worker modes and scale S, over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from email.utils import parsedate_to_datetime

import pytest
import requests

SITE_INFO = "core_webservice_get_site_info"


# ------------------------------------------------------------------ scripted faults

@pytest.mark.parametrize("kind,code", [("http_503", 503), ("http_502", 502), ("http_504", 504), ("http_429", 429)])
def test_http_error_bursts(real, kind, code):
    assert real.faults({"script": [{"fault": kind, "count": 2, "retry_after": 2}]}).status_code == 200
    for _ in range(2):
        r = real.call(SITE_INFO)
        assert r.status_code == code
        assert r.headers["Retry-After"] == "2"
        assert "html" in r.headers["Content-Type"]
    assert real.call(SITE_INFO).status_code == 200
    c = real.counters()
    assert c["faults_injected"][kind] == 2 and c["by_status"][str(code)] == 2 and c["by_status"]["200"] == 1


def test_script_after_and_wsfunction_filter(real):
    real.faults({"script": [{"fault": "http_503", "count": 1, "after": 2, "wsfunction": "core_course_get_courses"}]})
    assert real.call(SITE_INFO).status_code == 200  # filtered out: does not count towards `after`
    assert real.call("core_course_get_courses").status_code == 200
    assert real.call("core_course_get_courses").status_code == 200
    assert real.call("core_course_get_courses").status_code == 503
    assert real.call("core_course_get_courses").status_code == 200


def test_script_entries_consumed_in_order(real):
    real.faults({"script": [{"fault": "http_502", "count": 1}, {"fault": "http_504", "count": 1}]})
    assert [real.call(SITE_INFO).status_code for _ in range(3)] == [502, 504, 200]


def test_retry_after_http_date_form(real):
    real.faults({"script": [{"fault": "http_503", "retry_after": 30, "retry_after_format": "http-date"}]})
    r = real.call(SITE_INFO)
    when = parsedate_to_datetime(r.headers["Retry-After"]).timestamp()
    assert 25 <= when - time.time() <= 35


def test_drop_connection(real):
    real.faults({"script": [{"fault": "drop_connection"}]})
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(real.rest, data={"wstoken": real.token, "wsfunction": SITE_INFO, "moodlewsrestformat": "json"},
                      timeout=10)
    assert real.call(SITE_INFO).status_code == 200
    assert real.counters()["by_status"]["dropped"] == 1


def test_truncated_json(real):
    real.faults({"script": [{"fault": "truncated_json"}]})
    r = real.call("core_course_get_courses")
    assert r.status_code == 200 and r.headers["Content-type"] == "application/json"
    with pytest.raises(ValueError):
        json.loads(r.text)
    full = real.call("core_course_get_courses").text
    assert full.startswith(r.text) and len(r.text) < len(full)


@pytest.mark.parametrize("status", [None, 500])
def test_html_error_page(real, status):
    entry = {"fault": "html_error"}
    if status:
        entry["status"] = status
    real.faults({"script": [entry]})
    r = real.call(SITE_INFO)
    assert r.status_code == (status or 200)
    assert r.headers["Content-Type"].startswith("text/html") and "<html" in r.text


def test_ratelimit_payload(real):
    real.faults({"script": [{"fault": "ratelimit_payload", "retry_after": 3}]})
    body = real.json(SITE_INFO)
    assert body["errorcode"] == "ratelimitexceeded" and body["exception"] == "core\\exception\\moodle_exception"
    assert "3 seconds" in body["message"]


def test_latency(real):
    real.faults({"latency_ms": 150})
    t0 = time.perf_counter()
    real.call(SITE_INFO)
    assert time.perf_counter() - t0 >= 0.14


def test_empty_lists_glitch(real):
    real.faults({"empty_lists": True})
    assert real.json("core_course_get_courses") == []
    assert real.json("core_enrol_get_enrolled_users", {"courseid": "2"}) == []
    assert real.json("core_user_get_users", {"criteria[0][key]": "email", "criteria[0][value]": "%"})["users"] == []
    assert real.json(SITE_INFO)["userid"] == 2


def test_bad_fault_config_is_400(real):
    for cfg in ({"script": [{"fault": "meteor"}]}, {"rate_limit": {"burst": 3}}, {"nonsense": 1},
                {"rate_limit": {"rps": 1, "retry_after": "fortnight"}}):
        r = real.faults(cfg)
        assert r.status_code == 400 and r.json()["error"]


# ------------------------------------------------------------------ rate limiter

def test_rate_limit_429_with_retry_after_seconds(real):
    real.faults({"rate_limit": {"rps": 2, "burst": 3}})
    codes = [real.call(SITE_INFO).status_code for _ in range(6)]
    assert codes[:3] == [200, 200, 200] and 429 in codes[3:]
    r = real.call(SITE_INFO)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    time.sleep(0.6)
    assert real.call(SITE_INFO).status_code == 200  # refilled
    c = real.counters()
    assert c["responses_429"] == c["by_status"]["429"] >= 2 and c["faults_injected"]["rate_limit"] >= 2


def test_rate_limit_per_token_and_http_date(real):
    real.faults({"rate_limit": {"rps": 0.5, "burst": 1, "retry_after": "http-date"}})
    assert real.call(SITE_INFO).status_code == 200
    r = real.call(SITE_INFO)
    assert r.status_code == 429
    assert parsedate_to_datetime(r.headers["Retry-After"]).timestamp() >= time.time()
    assert real.call(SITE_INFO, token=real.token + "-reader").status_code == 200  # own bucket


def test_rate_limit_moodle_payload_style(real):
    real.faults({"rate_limit": {"rps": 1, "burst": 1, "style": "moodle_payload"}})
    real.call(SITE_INFO)
    r = real.call(SITE_INFO)
    assert r.status_code == 200 and r.json()["errorcode"] == "ratelimitexceeded"


def test_rate_limit_from_constructor(make_emu):
    c = make_emu(scale="real", rate_limit_rps=1)
    codes = [c.call(SITE_INFO).status_code for _ in range(3)]
    assert codes[0] == 200 and 429 in codes


# ------------------------------------------------------------------ mutations

def test_mutations_change_what_moodle_returns(fresh_real):
    c = fresh_real
    r = c.mutate([
        {"op": "remove_course", "course_id": 4},
        {"op": "hide_course", "course_id": 3},
        {"op": "set_course_price", "course_id": 2, "price": 59.5},
        {"op": "set_course_price", "course_id": 6, "price": None},
        {"op": "suspend_enrolment", "course_id": 2, "user_id": 3},
        {"op": "unenrol", "course_id": 2, "user_id": 4},
        {"op": "enrol", "course_id": 7, "user_id": 15, "role": "student"},
        {"op": "add_user", "username": "newbie", "email": "New@Example.com", "firstname": "Néw", "lastname": "Bie"},
        {"op": "remove_user", "user_id": 13},
        {"op": "set_user_email", "user_id": 6, "email": "ursula@example.com"},
        {"op": "suspend_user", "user_id": 5},
    ])
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    new_id = res[7]["user_id"]
    assert new_id == 16
    courses = {x["id"]: x for x in c.json("core_course_get_courses")}
    assert 4 not in courses and courses[3]["visible"] == 0
    assert courses[2]["customfields"][0]["valueraw"] == 59.5 and courses[6]["customfields"][0]["valueraw"] is None
    assert [u["id"] for u in c.json("core_enrol_get_enrolled_users", {"courseid": "7"})] == [15]
    active = [u["id"] for u in c.json("core_enrol_get_enrolled_users", {"courseid": "2", "options[0][name]": "onlyactive",
                                                                        "options[0][value]": "1"})]
    assert 3 not in active and 4 not in active and 13 not in active
    users = {u["id"]: u for u in c.json("core_user_get_users", {"criteria[0][key]": "email",
                                                                "criteria[0][value]": "%"})["users"]}
    assert 13 not in users and users[16]["firstname"] == "Néw" and users[5]["suspended"] is True
    assert users[6]["email"] == "ursula@example.com"
    assert c.summary()["courses"] == 5 and c.summary()["users"] == 15


def test_bad_mutation_is_400_with_message(fresh_real):
    for ops in ([{"op": "explode"}], [{"op": "hide_course", "course_id": 999}], [{"op": "remove_course", "course_id": 1}],
                [{"op": "enrol", "course_id": 2, "user_id": 3, "role": "overlord"}],
                [{"op": "unenrol", "course_id": 7, "user_id": 3}], [{"op": "add_user", "username": "alice",
                                                                      "firstname": "A", "lastname": "B"}]):
        r = fresh_real.mutate(ops)
        assert r.status_code == 400 and "ops[0]" in r.json()["error"], ops
    r = requests.post(fresh_real.url + "/__emulator__/mutate", data="not json", timeout=10)
    assert r.status_code == 400


# ------------------------------------------------------------------ counters, cost, workers

def test_counters_and_cost_model(real):
    real.call(SITE_INFO)
    real.call("core_enrol_get_enrolled_users", {"courseid": "2"})
    real.call("core_enrol_get_enrolled_users", {"courseid": "2", "options[0][name]": "userfields",
                                                "options[0][value]": "id,lastcourseaccess,roles"})
    real.call(SITE_INFO, token="bad")
    c = real.counters()
    assert c["requests_total"] == 4
    assert c["by_function"] == {SITE_INFO: 2, "core_enrol_get_enrolled_users": 2}
    assert c["by_status"] == {"200": 4}
    by_fn = c["server_time_ms_by_function"]
    assert by_fn[SITE_INFO] == pytest.approx(36.0)
    assert by_fn["core_enrol_get_enrolled_users"] == pytest.approx(18 + 12 * 3.5 + 18 + 12 * 1.02)
    assert c["server_time_ms"] == pytest.approx(sum(by_fn.values()))
    real.reset()
    assert real.counters()["requests_total"] == 0


def _parallel(client, n):
    results = []

    def one():
        results.append(requests.post(client.rest, data={"wstoken": client.token, "wsfunction": SITE_INFO,
                                                        "moodlewsrestformat": "json"}, timeout=30).status_code)

    threads = [threading.Thread(target=one) for _ in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, results


def test_single_worker_serialises_simulated_cost(make_emu):
    c = make_emu(scale="real", workers=1, simulate_cost=True, cost_scale=5.0)  # 90 ms per call
    elapsed, codes = _parallel(c, 4)
    assert codes == [200] * 4
    assert elapsed >= 4 * 0.09 * 0.95
    counters = c.counters()
    assert counters["peak_active"] == 1 and counters["peak_concurrency"] >= 2


def test_n_workers_run_in_parallel(make_emu):
    c = make_emu(scale="real", workers=4, simulate_cost=True, cost_scale=10.0)  # 180 ms per call
    elapsed, codes = _parallel(c, 4)
    assert codes == [200] * 4
    assert elapsed < 4 * 0.18 * 0.8
    assert c.counters()["peak_active"] >= 2


# ------------------------------------------------------------------ scale S and the control API

def test_scale_s_generation_sanity(make_emu):
    c = make_emu(scale="S", seed=7)
    s = c.summary()
    assert s["courses"] == 50 and 950 <= s["users"] <= 1000 and 4500 <= s["enrolments"] <= 5500
    assert 0 < s["active_enrolments"] < s["enrolments"]
    for key in ("suspended_users", "users_without_email", "users_without_enrolments", "hidden_courses",
                "multi_role_enrolments", "priced_courses"):
        assert s[key] > 0, key
    assert all(v > 0 for v in s["enrolments_by_status"].values())
    users = c.json("core_user_get_users", {"criteria[0][key]": "email", "criteria[0][value]": "%"})["users"]
    assert len(users) == s["users"] - s["users_without_email"]
    assert any(u["email"] != u["email"].lower() for u in users)
    assert any(any(ord(ch) > 127 for ch in u["fullname"]) for u in users)


def test_generation_is_deterministic(make_emu):
    a = make_emu(scale="demo", seed=11)
    b = make_emu(scale="demo", seed=11)
    other = make_emu(scale="demo", seed=12)
    def body(c):  # the site URL (port) differs between servers
        return c.call("core_enrol_get_enrolled_users", {"courseid": "3"}).text.replace(c.url.replace("/", "\\/"), "URL")

    ra = body(a)
    assert ra == body(b)
    assert a.summary()["enrolments"] == b.summary()["enrolments"]
    assert ra != body(other)


def test_large_lists_stream_as_identical_chunked_json(make_emu, monkeypatch):
    from moodle_emulator import encoding, functions

    # The users' `_lastloaded` preference is the request time: two calls a second apart differ.
    monkeypatch.setattr(functions, "clock", lambda: 1795700000.0)
    c = make_emu(scale="demo", seed=42)
    params = {"criteria[0][key]": "email", "criteria[0][value]": "%"}
    plain = c.call("core_user_get_users", params)
    assert "Content-Length" in plain.headers
    monkeypatch.setattr(encoding, "STREAM_THRESHOLD", 10)
    streamed = c.call("core_user_get_users", params)
    assert streamed.headers.get("Transfer-Encoding") == "chunked"
    assert streamed.content == plain.content


def test_control_api_unknown_endpoint(real):
    r = requests.get(real.url + "/__emulator__/nope", timeout=10)
    assert r.status_code == 404 and "endpoints" in r.json()


def test_cli_serves_and_exits_cleanly_on_sigterm():
    proc = subprocess.Popen([sys.executable, "-m", "moodle_emulator", "--port", "0", "--scale", "real",
                             "--token", "cli-token"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        for _ in range(10):
            line = proc.stdout.readline()
            if line.startswith("URL:"):
                url = line.split()[1]
                break
        assert url, proc.stderr.read()
        r = requests.get(url + "/webservice/rest/server.php", params={"wstoken": "cli-token", "wsfunction": SITE_INFO,
                                                                      "moodlewsrestformat": "json"}, timeout=10)
        assert r.json()["sitename"] == "Test"
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
