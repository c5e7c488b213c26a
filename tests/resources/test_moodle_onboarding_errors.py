"""What a first set-up gets wrong, as the client reports it: every error shape captured from a
real Moodle 5.0.6+ for onboarding (tests/fixtures/real-moodle, `_index_onboarding.json`) replayed
over HTTP, and network failures on real sockets (a closed port, an unresolvable host, TLS
against a plain-HTTP server). Each becomes one typed error that says what to fix; only what can
pass is retried."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from moodle_replay import SECRET_TOKEN, Reply, assert_token_free

from resources.moodle import (
    MoodleAccessError,
    MoodleAccountStateError,
    MoodleAuthenticationError,
    MoodleError,
    MoodleInvalidParameterError,
    MoodleNetworkError,
    MoodleSiteUrlError,
    MoodleTransientError,
    MoodleWebServicesDisabledError,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "real-moodle"

# Every onboarding capture that is an error for the client, and the class it must become.
EXPECTED = {
    "error_function_missing_core_user_get_users_by_field": MoodleAccessError,
    "error_function_missing_core_enrol_get_enrolled_users": MoodleAccessError,
    "debug_error_function_missing_core_user_get_users_by_field": MoodleAccessError,
    "error_service_disabled_site_info": MoodleAccessError,
    "error_service_disabled_get_categories": MoodleAccessError,
    "debug_error_service_disabled_site_info": MoodleAccessError,
    "error_token_expired_first_call": MoodleAccessError,  # indistinguishable without debugging
    "error_token_expired_second_call": MoodleAuthenticationError,
    "debug_error_token_expired": MoodleAuthenticationError,
    "error_token_ip_restricted": MoodleAccessError,
    "error_token_ip_restricted_get_categories": MoodleAccessError,
    "debug_error_token_ip_restricted": MoodleAccessError,
    "error_webservices_disabled_GET_no_params": MoodleWebServicesDisabledError,
    "error_rest_protocol_disabled_only_soap_enabled": MoodleWebServicesDisabledError,
    "error_ws_enabled_GET_no_params": MoodleSiteUrlError,  # XML: the parameters did not arrive
    "error_no_rest_use_capability_site_info": MoodleAccessError,
    "debug_error_no_rest_use_capability_site_info": MoodleAccessError,
    "error_service_required_capability_missing": MoodleAccessError,
    "error_service_authorised_users_not_listed": MoodleAccessError,
    "error_token_user_suspended": MoodleAuthenticationError,
    "error_token_user_auth_nologin": MoodleAuthenticationError,
    "error_site_maintenance_mode": MoodleTransientError,
    "error_enrolled_users_no_viewparticipants": MoodleAccessError,
    "error_enrolled_users_site_course_no_site_viewparticipants": MoodleAccessError,
    "error_enrolled_users_onlyactive_no_enrolreview": MoodleAccessError,
    "error_enrolled_users_onlysuspended_no_enrolreview": MoodleAccessError,
    "error_enrolled_users_no_course_view": MoodleAccessError,
    "error_enrolled_users_hidden_course_no_viewhiddencourses": MoodleAccessError,
    "error_enrolled_users_force_password_change": MoodleAccountStateError,
    "error_users_by_field_force_password_change": MoodleAccountStateError,
    "error_users_by_field_user_not_fully_set_up": MoodleAccountStateError,
    "error_enrolled_users_user_not_fully_set_up": MoodleAccountStateError,
    "error_users_by_field_site_policy_not_agreed": MoodleAccountStateError,
    "plain_user_get_courses": MoodleAccessError,
    "plain_user_enrolled_users_site_course_ids": MoodleAccessError,
    "plain_user_enrolled_users_course_2": MoodleAccessError,
    "plain_user_enrolled_users_course_2_onlyactive": MoodleAccessError,
    "teacher_enrolled_users_course_4": MoodleAccessError,
    "teacher_enrolled_users_site_course_ids": MoodleAccessError,
    "probe_categories_visible_0_criteriaerror": MoodleInvalidParameterError,
    "probe_categories_idnumber_criteriaerror": MoodleInvalidParameterError,
    "debug_probe_categories_idnumber_criteriaerror": MoodleInvalidParameterError,
    "probe_enrolled_users_foreign_group_nopermissions": MoodleAccessError,
    "url_login_page_GET": MoodleSiteUrlError,
    "url_login_page_as_base": MoodleSiteUrlError,
    "url_wrong_subdirectory_404": MoodleSiteUrlError,
    "url_site_root_POST": MoodleSiteUrlError,  # the front page
    "url_host_alias_not_wwwroot": MoodleSiteUrlError,
    "url_host_alias_redirect_followed": MoodleSiteUrlError,
}


def load(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def index_names() -> list[str]:
    return [e["name"] for e in json.loads((FIXTURES / "_index_onboarding.json").read_text(encoding="utf-8"))]


def push(replay, fx: dict) -> None:
    keep = ("content-type", "retry-after", "location")
    headers = {k: v for k, v in fx["headers"].items() if k.lower() in keep}
    replay.push(Reply(status=fx["status"], body=fx["body_raw"], headers=headers))


def test_every_error_capture_is_classified():
    """Each capture the index lists as an error (or a non-JSON answer) has an expected class here."""
    errors = {e["name"] for e in json.loads((FIXTURES / "_index_onboarding.json").read_text()) if e["kind"] != "list"
              and e["kind"] != "dict"}
    assert errors <= set(EXPECTED), sorted(errors - set(EXPECTED))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_onboarding_capture_becomes_one_typed_error(name, replay, make_client):
    fx = load(name)
    push(replay, fx)
    client = make_client(replay.url)
    wsfunction = fx["request"]["params"].get("wsfunction") or "core_webservice_get_site_info"
    with pytest.raises(MoodleError) as info:
        client.webservice_post(wsfunction)
    err = info.value
    assert type(err) is EXPECTED[name], str(err)
    assert not err.retryable and err.attempts == 1 and len(replay.seen) == 1  # none of these is retried
    assert " — " in str(err) and err.hint in str(err)
    assert "<a " not in str(err)  # sitepolicynotagreed's HTML link is reduced to words
    assert_token_free(err)


def test_account_states_say_fix_the_account(replay, make_client):
    for name in ("error_users_by_field_force_password_change", "error_users_by_field_site_policy_not_agreed",
                 "error_enrolled_users_user_not_fully_set_up"):
        push(replay, load(name))
        with pytest.raises(MoodleAccountStateError, match="Force password change") as info:
            make_client(replay.url).webservice_post("core_user_get_users_by_field")
        assert info.value.kind == "account_state"


def test_access_exception_points_at_the_check_command(replay, make_client):
    push(replay, load("error_service_disabled_site_info"))
    with pytest.raises(MoodleAccessError, match="moodle-integration check"):
        make_client(replay.url).webservice_post("core_webservice_get_site_info")


def test_a_redirect_is_reported_with_the_url_to_use_not_followed(replay, make_client):
    """A MOODLE_URL whose host differs from $CFG->wwwroot gets a 303; following it would re-send
    the POST as a GET without the token. The client stops and names the right base URL."""
    push(replay, load("url_host_alias_not_wwwroot"))
    with pytest.raises(MoodleSiteUrlError, match=r"set MOODLE_URL=http://127\.0\.0\.1:8089 ") as info:
        make_client(replay.url).webservice_post("core_webservice_get_site_info")
    assert info.value.status == 303 and info.value.attempts == 1
    assert [s.method for s in replay.seen] == ["POST"]  # no follow-up GET


def test_a_redirect_elsewhere_names_the_target(replay, make_client):
    replay.push(Reply(302, "", {"Location": "https://sso.example.edu/login?next=x&wstoken=" + SECRET_TOKEN}))
    with pytest.raises(MoodleSiteUrlError, match="redirects to https://sso.example.edu/login") as info:
        make_client(replay.url).webservice_post("core_webservice_get_site_info")
    assert_token_free(info.value)


def test_plain_http_to_a_tls_port_says_use_https(replay, make_client):
    replay.push(Reply(400, "<html><center>The plain HTTP request was sent to HTTPS port</center></html>",
                      {"Content-type": "text/html"}))
    with pytest.raises(MoodleSiteUrlError, match="https://"):
        make_client(replay.url).webservice_post("core_webservice_get_site_info")


# --- network failures, on real sockets -----------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_closed_port_is_retried_then_named(make_client):
    port = _closed_port()
    client = make_client(f"http://127.0.0.1:{port}", max_retries=2)
    with pytest.raises(MoodleTransientError) as info:
        client.webservice_post("core_webservice_get_site_info")
    err = info.value
    assert err.attempts == 3  # refused can be a restarting server: retried, then given up
    assert f"connection to 127.0.0.1:{port} refused" in err.message and "Connection refused" in err.message
    assert "check the port in MOODLE_URL" in err.hint
    assert "HTTPConnectionPool" not in str(err)  # the reason, not requests' wrapping


def test_an_unresolvable_host_fails_at_once(make_client):
    client = make_client("http://moodle-integration-test.invalid", max_retries=3)
    started = time.monotonic()
    with pytest.raises(MoodleNetworkError) as info:
        client.webservice_post("core_webservice_get_site_info")
    assert info.value.attempts == 1 and client.snapshot()["requests_total"] == 1
    assert "does not resolve" in info.value.message and "host name in MOODLE_URL" in info.value.hint
    assert time.monotonic() - started < 10


def test_tls_against_a_plain_http_server_fails_at_once(emulator, make_client):
    client = make_client(emulator.url.replace("http://", "https://"), max_retries=3)
    with pytest.raises(MoodleNetworkError) as info:
        client.webservice_post("core_webservice_get_site_info")
    err = info.value
    assert err.attempts == 1 and "TLS handshake" in err.message
    assert "MOODLE_URL must start with http://" in err.hint
    assert emulator.counters.snapshot()["requests_total"] == 0  # never got as far as HTTP


def test_https_refused_where_http_answers_fails_at_once_saying_use_http(make_client):
    """https:// to a site that only serves plain HTTP on port 80: 443 refuses, 80 accepts. Needs the
    two default ports on 127.0.0.1 (binding 80 needs root): skipped where they are taken."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", 80))
    except OSError as exc:
        listener.close()
        pytest.skip(f"cannot listen on 127.0.0.1:80 here ({exc})")
    with listener:
        listener.listen(8)
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", 443)) == 0:
                pytest.skip("something listens on 127.0.0.1:443")
        client = make_client("https://127.0.0.1", max_retries=3)
        with pytest.raises(MoodleNetworkError) as info:
            client.webservice_post("core_webservice_get_site_info")
    assert info.value.attempts == 1 and "refused" in info.value.message
    assert "http:80 answers" in info.value.hint and "MOODLE_URL must start with http://" in info.value.hint
