"""`run_check` against the emulator's tokens, states and faults, and against dead URLs: one test per
case the onboarding captures cover. Each names what is wrong and how to fix it; the exit code says
whether a full sync can run (0), cannot (1) or will see less than everything (3)."""

from __future__ import annotations

import json
import socket

import pytest

from moodle_assets.sync.check import EXIT_FAIL, EXIT_OK, EXIT_PARTIAL, FAIL, OK, WARN, run_check
from moodle_emulator import EmulatorServer
from resources.moodle import MoodleClient

ADMIN = "check-admin-token-0123456789abcdef"
TOKENS = {
    "dedicated": {"preset": "dedicated", "username": "moodlesync"},
    "reader": "reader",
    "plain": {"preset": "plain", "username": "plain.user"},
    "no_viewdetails": {"preset": "dedicated", "username": "capuser", "without": ["moodle/user:viewdetails"]},
    "no_enrolreview": {"preset": "dedicated", "username": "capuser", "without": ["moodle/course:enrolreview"]},
    "no_accessallgroups": {"preset": "dedicated", "username": "capuser", "without": ["moodle/site:accessallgroups"]},
    "no_rest": {"capabilities": [], "username": "norole.user"},
    "two_missing": {"preset": "dedicated", "username": "moodlesync",
                    "functions": ["core_webservice_get_site_info", "core_course_get_categories",
                                  "core_course_get_courses_by_field"]},
    "no_site_info": {"preset": "dedicated", "username": "moodlesync",
                     "functions": ["core_course_get_categories", "core_course_get_courses_by_field",
                                   "core_enrol_get_enrolled_users", "core_user_get_users_by_field"]},
    "expired": {"preset": "dedicated", "username": "moodlesync", "state": "expired"},
    "ip_restricted": {"preset": "dedicated", "username": "moodlesync", "state": "ip_restricted"},
    "service_disabled": {"preset": "dedicated", "username": "moodlesync", "state": "service_disabled"},
    "suspended": {"preset": "dedicated", "username": "moodlesync", "state": "suspended"},
    "force_password_change": {"preset": "dedicated", "username": "moodlesync", "state": "force_password_change"},
    "site_policy": {"preset": "dedicated", "username": "moodlesync", "state": "site_policy"},
}


@pytest.fixture(scope="module")
def moodle():
    with EmulatorServer(scale="real", token=ADMIN, tokens={f"{k}-0123456789abcdef": v for k, v in TOKENS.items()},
                        debug=False) as emu:
        yield emu


def check(url: str, token: str, **settings):
    client = MoodleClient(url, token, max_retries=1, base_delay_ms=5, max_delay_ms=10, requests_per_second=0,
                          connect_timeout_s=3, **settings)
    try:
        return run_check(client, url)
    finally:
        client.close()


def token(name: str) -> str:
    return f"{name}-0123456789abcdef"


def lines(report) -> dict:
    return {line.key: line for line in report.lines}


def test_an_admin_token_passes(moodle):
    report = check(moodle.url, ADMIN)
    assert report.exit_code == EXIT_OK
    got = lines(report)
    assert got["site_admin"].status == OK and "site administrator" in got["site_admin"].title
    assert got["site"].detail == "release 5.0.6+ (Build: 20260403), version 2025041406.11"
    assert not any(k.startswith("capability:") for k in got)  # an administrator needs no probe


def test_the_guides_dedicated_account_passes_every_capability(moodle):
    report = check(moodle.url, token("dedicated"))
    assert report.exit_code == EXIT_OK, [(l.key, l.status, l.detail) for l in report.lines if l.status != OK]
    caps = [l for l in report.lines if l.key.startswith("capability:")]
    assert len(caps) == 13 and all(l.status == OK for l in caps)
    assert report.identity.username == "moodlesync" and not report.identity.is_site_admin


def test_a_missing_capability_that_hides_rows_is_a_warning_naming_it(moodle):
    report = check(moodle.url, token("no_viewdetails"))
    assert report.exit_code == EXIT_PARTIAL
    line = lines(report)["capability:moodle/user:viewdetails"]
    assert line.status == WARN and "moodle/user:viewdetails" in line.fix and "step 4" in line.fix
    line = lines(report)["capability:moodle/site:accessallgroups"]
    assert line.status == OK
    assert check(moodle.url, token("no_accessallgroups")).exit_code == EXIT_PARTIAL


def test_a_missing_capability_that_stops_a_sync_fails(moodle):
    report = check(moodle.url, token("no_enrolreview"))
    assert report.exit_code == EXIT_FAIL
    assert lines(report)["capability:moodle/course:enrolreview"].status == FAIL


def test_a_plain_users_token_says_it_is_no_administrator_and_names_what_it_lacks(moodle):
    report = check(moodle.url, token("plain"))
    assert report.exit_code == EXIT_FAIL
    got = lines(report)
    assert "not a site administrator" in got["site_admin"].title
    assert got["capability:moodle/course:view"].status == FAIL
    assert got["capability:moodle/course:enrolreview"].status == FAIL
    assert got["capability:moodle/user:viewdetails"].status == WARN


def test_a_service_lacking_two_functions_names_both(moodle):
    report = check(moodle.url, token("two_missing"))
    assert report.exit_code == EXIT_FAIL
    line = lines(report)["functions"]
    assert line.status == FAIL
    assert line.detail == "missing: core_enrol_get_enrolled_users, core_user_get_users_by_field"
    assert "External services" in line.fix


def test_site_info_missing_from_the_service_is_told_apart(moodle):
    line = lines(check(moodle.url, token("no_site_info")))["functions"]
    assert line.status == FAIL and "core_webservice_get_site_info" in line.detail


def test_an_expired_token_is_named_once_moodle_has_deleted_it(moodle):
    line = lines(check(moodle.url, token("expired")))["token"]
    assert line.status == FAIL and "expired" in line.detail and "new token" in line.fix


@pytest.mark.parametrize("name", ["ip_restricted", "service_disabled", "no_rest"])
def test_a_refusal_before_any_function_lists_what_to_check(moodle, name):
    report = check(moodle.url, token(name))
    line = lines(report)["token"]
    assert report.exit_code == EXIT_FAIL and line.status == FAIL
    assert "before any function runs" in line.detail
    for cause in ("webservice/rest:use", "enabled", "IP restriction", "Authorised users only", "Valid until"):
        assert cause in line.fix


def test_with_debugging_on_the_refusal_names_the_reason():
    with EmulatorServer(scale="real", token=ADMIN, debug=True, tokens={token("ip"): {"preset": "dedicated",
                                                                                       "state": "ip_restricted"}}) as emu:
        line = lines(check(emu.url, token("ip")))["token"]
    assert "Invalid service - IP:127.0.0.1 is not supported" in line.detail


def test_suspended_account_and_unknown_token(moodle):
    assert "suspended" in lines(check(moodle.url, token("suspended")))["token"].detail
    line = lines(check(moodle.url, "no-such-token-0123456789"))["token"]
    assert line.status == FAIL and "Invalid token" in line.detail and "MOODLE_TOKEN" in line.fix


@pytest.mark.parametrize("name, reason", [("force_password_change", "forcepasswordchangenotice"),
                                          ("site_policy", "Site policy not agreed")])
def test_an_account_that_cannot_open_the_site(moodle, name, reason):
    report = check(moodle.url, token(name))
    line = lines(report)["account"]
    assert report.exit_code == EXIT_FAIL and line.status == FAIL
    assert reason in line.detail and "Force password change" in line.fix


def test_web_services_off():
    with EmulatorServer(scale="real", token=ADMIN) as emu:
        emu.set_faults({"webservices_disabled": True})
        report = check(emu.url, ADMIN)
    got = lines(report)
    assert got["url"].status == OK and got["webservices"].status == FAIL and "Enable web services" in got["webservices"].fix


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    "url, finding, fix",
    [
        ("http://127.0.0.1:{closed}", "refused", "check the port in MOODLE_URL"),
        ("http://moodle-integration-check.invalid", "does not resolve", "host name in MOODLE_URL"),
        ("{https}", "TLS handshake", "must start with http://"),
    ],
)
def test_a_url_that_does_not_answer(moodle, url, finding, fix):
    url = url.format(closed=_closed_port(), https=moodle.url.replace("http://", "https://"))
    report = check(url, ADMIN)
    line = lines(report)["url"]
    assert report.exit_code == EXIT_FAIL and line.status == FAIL and finding in line.detail and fix in line.fix


def test_a_url_of_another_page_gets_the_login_page_hint(moodle):
    report = check(moodle.url + "/nowhere", ADMIN)
    line = lines(report)["url"]
    assert line.status == FAIL and "HTTP 404" in line.detail and "$CFG->wwwroot" in line.fix


def test_the_report_never_holds_the_token_or_the_private_access_key(moodle):
    report = check(moodle.url, token("dedicated"))
    text = json.dumps(report.as_dict())
    assert token("dedicated") not in text and moodle.dataset.site.privatekey not in text
    assert report.as_dict()["token_user"] == {"id": report.identity.user_id, "username": "moodlesync",
                                              "site_admin": False}
