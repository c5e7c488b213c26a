"""Every response captured from a real Moodle, replayed over real HTTP through the client.

Plus the error classes for proxy behaviour (429/5xx/HTML/dropped connections/truncation),
retries stopping at the limit, Retry-After fail-fast, warnings, and token hygiene.
"""
from __future__ import annotations

import json
import pickle

import pytest
from moodle_replay import SECRET_TOKEN, Reply, assert_token_free, load_real_fixture, real_fixture_names

from resources.moodle import (
    MoodleAccessError,
    MoodleAuthenticationError,
    MoodleError,
    MoodleInvalidParameterError,
    MoodleMissingRecordError,
    MoodleRateLimitedError,
    MoodleResource,
    MoodleSiteUrlError,
    MoodleTransientError,
    MoodleUnexpectedWarningsError,
    MoodleUnknownError,
    MoodleWebServicesDisabledError,
    raise_for_warnings,
)
from resources.moodle_errors import error_from_payload

BY_ERRORCODE = {
    "invalidtoken": MoodleAuthenticationError,
    "invalidrecordunknown": MoodleMissingRecordError,
    "invalidrecord": MoodleMissingRecordError,
    "accessexception": MoodleAccessError,
    "invalidparameter": MoodleInvalidParameterError,
}


def expected_class(fx: dict):
    body = fx["body_raw"]
    if fx["status"] == 403 and body == "":
        return MoodleWebServicesDisabledError
    try:
        data = json.loads(body)
    except ValueError:
        return MoodleSiteUrlError  # XML (no moodlewsrestformat: the parameters did not arrive)
    if isinstance(data, dict) and "exception" in data:
        return BY_ERRORCODE[data["errorcode"]]
    return None


def fixture_wsfunction(fx: dict) -> str:
    return fx["request"]["params"].get("wsfunction") or "core_webservice_get_site_info"


@pytest.mark.parametrize("name", real_fixture_names())
@pytest.mark.parametrize("method", ["POST", "GET"])
def test_real_moodle_response_over_http(name, method, replay, make_client):
    fx = replay.push_fixture(name)
    client = make_client(replay.url)
    expected = expected_class(fx)
    wsfunction = fixture_wsfunction(fx)
    if expected is None:
        assert client.call(wsfunction, {"courseid": 2}, method=method) == json.loads(fx["body_raw"])
    else:
        with pytest.raises(MoodleError) as info:
            client.call(wsfunction, {"courseid": 2}, method=method)
        err = info.value
        assert type(err) is expected, str(err)
        assert err.wsfunction == wsfunction
        assert not err.retryable and err.attempts == 1 and len(replay.seen) == 1  # never retried
        if expected not in (MoodleWebServicesDisabledError, MoodleSiteUrlError):
            data = json.loads(fx["body_raw"])
            assert err.errorcode == data["errorcode"] and err.exception == data["exception"]
            if "debuginfo" in data:
                assert err.debuginfo == data["debuginfo"]
        else:
            assert err.errorcode is None
        assert " — " in str(err) and err.hint in str(err)  # says what to do
        assert_token_free(err)
    # token placement: POST body only; GET query (required there) but no other URL
    seen = replay.seen[-1]
    if method == "POST":
        assert "wstoken" not in seen.raw_path and ("wstoken", SECRET_TOKEN) in seen.form
    else:
        assert ("wstoken", SECRET_TOKEN) in seen.query
    assert ("moodlewsrestformat", "json") in (seen.form if method == "POST" else seen.query)


def test_hints_name_the_action(replay, make_client):
    client = make_client(replay.url)
    cases = {
        "error_bad_token": "MOODLE_TOKEN",
        "error_function_not_in_service": "moodle-integration check",
        "error_webservices_disabled": "Enable web services",
    }
    for name, phrase in cases.items():
        replay.push_fixture(name)
        with pytest.raises(MoodleError, match=phrase):
            client.webservice_post("core_webservice_get_site_info")


def test_unknown_function_in_debug_mode_is_named(replay, make_client):
    replay.push_fixture("debug_error_unknown_wsfunction")
    with pytest.raises(MoodleMissingRecordError, match="unknown web service function"):
        make_client(replay.url).webservice_post("core_nonexistent_function_xyz")


@pytest.mark.parametrize(
    "payload, cls",
    [
        ({"exception": "moodle_exception", "errorcode": "invalidtoken", "message": "Invalid token"}, MoodleAuthenticationError),
        ({"exception": "webservice_access_exception", "errorcode": "accessexception", "message": "Access control exception",
          "debuginfo": "Invalid token - token expired - check validuntil time for the token"}, MoodleAuthenticationError),
        ({"exception": "moodle_exception", "errorcode": "wsaccessusersuspended", "message": "Refused"}, MoodleAuthenticationError),
        ({"exception": "required_capability_exception", "errorcode": "nopermissions", "message": "Sorry"}, MoodleAccessError),
        ({"exception": "core\\exception\\required_capability_exception", "errorcode": "nopermissions", "message": "x"}, MoodleAccessError),
        ({"exception": "moodle_exception", "errorcode": "errorcoursecontextnotvalid", "message": "x"}, MoodleAccessError),
        ({"exception": "core_external\\restricted_context_exception", "errorcode": "restrictedcontextexception", "message": "x"}, MoodleAccessError),
        ({"exception": "invalid_parameter_exception", "errorcode": "invalidparameter", "message": "x"}, MoodleInvalidParameterError),
        ({"exception": "moodle_exception", "errorcode": "criteriaerror", "message": "x"}, MoodleInvalidParameterError),
        ({"exception": "moodle_exception", "errorcode": "invaliduserfield", "message": "x"}, MoodleInvalidParameterError),
        ({"exception": "coding_exception", "errorcode": "codingerror", "message": "x"}, MoodleInvalidParameterError),
        ({"exception": "core\\exception\\coding_exception", "errorcode": "codingerror", "message": "x"}, MoodleInvalidParameterError),
        ({"exception": "dml_missing_record_exception", "errorcode": "invalidrecord", "message": "x"}, MoodleMissingRecordError),
        ({"exception": "dml_missing_record_exception", "errorcode": "invaliduser", "message": "x"}, MoodleMissingRecordError),
        ({"exception": "moodle_exception", "errorcode": "sitemaintenance", "message": "x"}, MoodleTransientError),
        ({"exception": "moodle_exception", "errorcode": "ratelimitexceeded", "message": "x"}, MoodleRateLimitedError),
        ({"exception": "moodle_exception", "errorcode": "x", "message": "Too many requests, slow down"}, MoodleRateLimitedError),
        ({"exception": "invalid_response_exception", "errorcode": "invalidresponse", "message": "x"}, MoodleUnknownError),
        ({"exception": "core\\exception\\moodle_exception", "errorcode": "somethingnew", "message": "x"}, MoodleUnknownError),
    ],
)
def test_classification_of_moodle_payloads_over_http(payload, cls, replay, make_client):
    replay.push(Reply(body=json.dumps(payload)), Reply(body=json.dumps(payload)), Reply(body="[]"))
    client = make_client(replay.url)
    if cls is MoodleRateLimitedError:  # retried, then succeeds
        replay.queue.pop()
        replay.push(Reply(body="[]"))
        assert client.webservice_post("f") == []
        return
    with pytest.raises(cls) as info:
        client.webservice_post("f")
    assert info.value.errorcode == payload["errorcode"]
    assert info.value.attempts == 1  # not retried
    assert error_from_payload(payload, "f").__class__ is cls


def test_ratelimit_patterns_are_configurable(replay, make_client):
    body = json.dumps({"exception": "moodle_exception", "errorcode": "slowdownplease", "message": "x"})
    replay.push(Reply(body=body), Reply(body="[1]"))
    client = make_client(replay.url, ratelimit_errorcode_pattern="slowdown")
    assert client.webservice_post("f") == [1]
    assert client.snapshot()["retries"] == 1


@pytest.mark.parametrize(
    "reply, cls, retryable",
    [
        (Reply(429, "", {"Content-type": "text/html"}), MoodleRateLimitedError, True),
        (Reply(502, "<html>bad gateway</html>", {"Content-type": "text/html"}), MoodleTransientError, True),
        (Reply(503, "", {}), MoodleTransientError, True),
        (Reply(504, "gateway timeout", {"Content-type": "text/plain"}), MoodleTransientError, True),
        (Reply(500, "<html>oops</html>", {"Content-type": "text/html"}), MoodleTransientError, False),
        (Reply(200, "<!DOCTYPE html><html>login</html>", {"Content-type": "text/html"}), MoodleTransientError, False),
        (Reply(200, '{"courses": [', {"Content-type": "application/json"}), MoodleTransientError, True),
        (Reply(200, "", {"Content-type": "application/json"}), MoodleTransientError, True),
        (Reply(200, '{"a": 1}', {"Content-type": "application/json"}, action="truncate"), MoodleTransientError, True),
        (Reply(action="drop"), MoodleTransientError, True),
        (Reply(404, "not found", {"Content-type": "text/html"}), MoodleSiteUrlError, False),
        (Reply(403, "<html>WAF says no</html>", {"Content-type": "text/html"}), MoodleAccessError, False),
        (Reply(418, "teapot", {}), MoodleUnknownError, False),
    ],
    ids=["429", "502", "503", "504", "500", "html", "truncated-json", "empty", "short-read", "drop", "404", "403-waf", "418"],
)
@pytest.mark.parametrize("method", ["POST", "GET"])
def test_proxy_and_transport_failures(reply, cls, retryable, method, replay, make_client):
    client = make_client(replay.url, max_retries=2)
    replay.push(reply, reply, reply, reply)
    with pytest.raises(cls) as info:
        client.call("core_course_get_courses", {"options": {"ids": [1]}}, method=method)
    err = info.value
    assert err.errorcode is None
    assert err.retryable is retryable
    assert err.attempts == (3 if retryable else 1)  # retries stop at the limit
    assert len(replay.seen) == err.attempts
    if retryable:
        assert "gave up after 3 attempts" in str(err)
    assert err.__cause__ is None and err.__context__ is None
    assert_token_free(err)
    snap = client.snapshot()
    assert snap["requests_total"] == err.attempts and snap["retries"] == err.attempts - 1
    assert snap["failures_by_kind"] == {err.kind: 1}


def test_connection_refused_get_url_is_scrubbed(make_client):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = make_client(f"http://127.0.0.1:{port}", max_retries=1)
    with pytest.raises(MoodleTransientError) as info:
        client.webservice_get("core_webservice_get_site_info", {"x": 1})
    assert "wstoken" not in str(info.value)  # the reason is kept, not requests' text quoting the GET URL
    assert f"127.0.0.1:{port} refused" in str(info.value)
    assert_token_free(info.value)
    assert info.value.attempts == 2


def test_transient_then_success_is_ridden_out(replay, make_client):
    replay.push(Reply(503, ""), Reply(action="drop"), Reply(200, '{"a":'), Reply(200, '{"ok": true}'))
    client = make_client(replay.url)
    assert client.webservice_post("f") == {"ok": True}
    snap = client.snapshot()
    assert snap["retries"] == 3 and snap["requests_total"] == 4 and snap["failures_by_kind"] == {}


def test_retry_after_beyond_cap_fails_fast_quoting_the_server(replay, make_client):
    replay.push(Reply(429, "", {"Retry-After": "3600"}))
    client = make_client(replay.url, retry_after_cap_ms=5000)
    with pytest.raises(MoodleRateLimitedError, match=r"retry after '3600'.*5 s cap") as info:
        client.webservice_post("f")
    assert info.value.attempts == 1 and info.value.retry_after == 3600
    replay.push(Reply(503, "", {"Retry-After": "Fri, 31 Dec 2100 23:59:59 GMT"}))
    with pytest.raises(MoodleTransientError, match="Fri, 31 Dec 2100 23:59:59 GMT"):
        client.webservice_post("f")


def test_warnings_helper_and_flag(replay, make_client):
    fx = load_real_fixture("error_get_users_invalid_criteria_key")
    client = make_client(replay.url)
    replay.push_fixture("error_get_users_invalid_criteria_key", times=3)
    params = {"criteria": [{"key": "bogus", "value": "x"}]}
    result = client.webservice_post("core_user_get_users", params)  # default: returned as is
    assert result == json.loads(fx["body_raw"])
    with pytest.raises(MoodleUnexpectedWarningsError, match="invalidfieldparameter") as info:
        client.webservice_post("core_user_get_users", params, fail_on_warnings=True)
    assert info.value.warnings and info.value.errorcode == "invalidfieldparameter"
    assert client.webservice_post("core_user_get_users", params, fail_on_warnings=True,
                                  allowed_warnings=["invalidfieldparameter"]) == result
    with pytest.raises(MoodleUnexpectedWarningsError):
        raise_for_warnings(result, "core_user_get_users")
    assert raise_for_warnings({"courses": [], "warnings": []}) == {"courses": [], "warnings": []}
    assert raise_for_warnings([1, 2]) == [1, 2]


def test_errors_pickle_with_their_fields():
    err = error_from_payload({"exception": "moodle_exception", "errorcode": "invalidtoken", "message": "m"}, "f")
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is MoodleAuthenticationError and again.errorcode == "invalidtoken" and str(again) == str(err)


def test_resource_hides_the_token_and_its_fields_drive_the_client(replay, throttle_dir):
    res = MoodleResource(url=replay.url, token=SECRET_TOKEN, max_retries=1, base_delay_ms=1, max_delay_ms=2,
                         requests_per_second=0, throttle_dir=throttle_dir)
    assert SECRET_TOKEN not in repr(res) and SECRET_TOKEN not in str(res)
    s = res.settings()
    assert (s.max_retries, s.base_delay_ms, s.max_delay_ms, s.requests_per_second) == (1, 1, 2, 0)
    replay.push(Reply(503, ""), Reply(503, ""))
    with pytest.raises(MoodleTransientError) as info:
        res.webservice_post("f")
    assert info.value.attempts == 2
    assert res.snapshot()["requests_by_function"] == {"f": 2}
    assert SECRET_TOKEN not in repr(res.get_client())


def test_the_environment_reaches_the_resource_through_the_settings_and_definitions(throttle_dir):
    from moodle_assets.definitions import build_definitions
    from moodle_assets.settings import load_settings

    env = {
        "MOODLE_RATE_LIMIT_MAX_RETRIES": "1",
        "MOODLE_RATE_LIMIT_BASE_DELAY_MS": "1",
        "MOODLE_RATE_LIMIT_MAX_DELAY_MS": "2",
        "MOODLE_RATE_LIMIT_REQUESTS_PER_SECOND": "0",
        "MOODLE_THROTTLE_DIR": throttle_dir,
    }
    moodle = build_definitions(load_settings(env)).resources["moodle"]
    assert (moodle.max_retries, moodle.base_delay_ms, moodle.max_delay_ms, moodle.requests_per_second) == (1, 1, 2, 0)
    assert moodle.throttle_dir == throttle_dir


@pytest.mark.parametrize(
    "var, value, phrase",
    [
        ("MOODLE_RATE_LIMIT_MAX_RETRIES", "three", "MOODLE_RATE_LIMIT_MAX_RETRIES must be a whole number"),
        ("MOODLE_RATE_LIMIT_MAX_RETRIES", "-1", "MOODLE_RATE_LIMIT_MAX_RETRIES must be greater than or equal to 0"),
        ("MOODLE_RATE_LIMIT_BASE_DELAY_MS", "1.5", "MOODLE_RATE_LIMIT_BASE_DELAY_MS must be a whole number"),
        ("MOODLE_RATE_LIMIT_MAX_DELAY_MS", "10", "MOODLE_RATE_LIMIT_MAX_DELAY_MS (10) must be >="),
        ("MOODLE_RATE_LIMIT_REQUESTS_PER_SECOND", "fast", "MOODLE_RATE_LIMIT_REQUESTS_PER_SECOND must be a number"),
        ("MOODLE_RATE_LIMIT_REQUESTS_PER_SECOND", "-2", "MOODLE_RATE_LIMIT_REQUESTS_PER_SECOND must be greater than"),
        ("MOODLE_RATE_LIMIT_BURST", "-1", "MOODLE_RATE_LIMIT_BURST must be greater than or equal to 0"),
        ("MOODLE_HTTP_READ_TIMEOUT_S", "0", "MOODLE_HTTP_READ_TIMEOUT_S must be greater than 0"),
        ("MOODLE_RATE_LIMIT_ERRORCODE_PATTERN", "(", "must be a regular expression"),
    ],
)
def test_bad_env_values_fail_with_one_clear_line(var, value, phrase):
    from moodle_assets.settings import ConfigError, load_settings

    with pytest.raises(ConfigError, match=phrase.replace("(", r"\(").replace(")", r"\)")) as info:
        load_settings({var: value})
    assert "\n" not in str(info.value) and str(info.value).startswith(var)


def test_bad_resource_fields_fail_with_one_clear_line():
    from moodle_assets.core.validation import ConfigError

    for fields, phrase in (({"max_retries": -1}, "max_retries must be"), ({"read_timeout_s": 0}, "read_timeout_s"),
                           ({"ratelimit_message_pattern": "("}, "regular expression")):
        with pytest.raises(ConfigError, match=phrase):
            MoodleResource(url="https://lms.example.edu", token=SECRET_TOKEN, **fields).get_client()


def test_bad_url_and_missing_token(throttle_dir):
    from moodle_assets.core.validation import ConfigError

    with pytest.raises(ConfigError, match="MOODLE_URL must be an http"):
        MoodleResource(url="lms.example.edu", token=SECRET_TOKEN).get_client()
    with pytest.raises(ConfigError, match="MOODLE_TOKEN is not set"):
        MoodleResource(url="https://lms.example.edu", token="  ").get_client()
