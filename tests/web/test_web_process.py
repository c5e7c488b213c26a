"""The web process over real HTTP: the Dagster extension (smoke), the admin page's forms
(CSRF, validation, PRG), the launcher's failure path, and the optional access token.

One web process for the module, with a queued coordinator and no daemon: launched runs are
created in Dagster but never execute.
"""
from __future__ import annotations

import re
import socket
from urllib.parse import urlsplit

import pytest

from moodle_assets.history import SyncHistory
from moodle_assets.core.targets import SyncTarget
from schedules.config_table import get_config
from web_helpers import ADMIN, REPO_ROOT, SYNC_SECRET, TRIGGER, WEB_TOKEN

HTML = {"Accept": "text/html,application/xhtml+xml"}


@pytest.fixture
def web(queued_web):
    queued_web.reset_history()
    return queued_web


def graphql(session, url, query, variables=None, headers=None):
    return session.post(url + "/graphql", json={"query": query, "variables": variables or {}}, headers=headers or {}, timeout=60)


# --- smoke: our extension of the Dagster webserver (internal API of 1.13.27) -------------------


def test_dagster_webserver_still_serves_its_own_endpoints(web):
    s = web.session()
    info = s.get(web.url + "/server_info", timeout=30).json()
    assert info["dagster_webserver_version"] == "1.13.27"
    assert graphql(s, web.url, "{ __typename }").json() == {"data": {"__typename": "Query"}}
    data = graphql(
        s, web.url,
        "{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } jobs { name } } } } }",
    ).json()["data"]["repositoriesOrError"]["nodes"]
    (repo,) = data
    assert repo["name"] == "__repository__" and repo["location"]["name"] == "moodle_integration"
    assert {"sync_course_catalog", "sync_user_directory", "sync_enrollments", "sync_all"} <= {j["name"] for j in repo["jobs"]}
    ui = s.get(web.url + "/runs", timeout=30)
    assert ui.status_code == 200 and "text/html" in ui.headers["content-type"]
    assert "Sync targets" not in ui.text  # the Dagster UI's page, not ours


def test_our_routes_match_before_the_ui_catch_all(web):
    s = web.session()
    page = s.get(web.url + ADMIN, timeout=30)
    assert page.status_code == 200 and "Sync targets" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert s.get(web.url + TRIGGER, timeout=30).status_code == 405
    for path in (f"{ADMIN}/COURSE_CATALOG/settings", f"{ADMIN}/COURSE_CATALOG/run", "/logout"):
        r = s.get(web.url + path, timeout=30)
        assert r.status_code == 405 and r.headers["allow"] == "POST", path
    assert s.post(web.url + ADMIN, timeout=30).status_code == 405
    assert s.get(web.url + ADMIN + "/", timeout=30, allow_redirects=False).headers["location"] == ADMIN


# --- admin page forms over HTTP ----------------------------------------------------------------


def csrf(session, url) -> str:
    page = session.get(url + ADMIN, timeout=30)
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def test_settings_form_saves_and_redirects_with_a_flash(web):
    s = web.session()
    token = csrf(s, web.url)
    r = s.post(web.url + f"{ADMIN}/USER_DIRECTORY/settings", data={"csrf_token": token, "frequency_minutes": "90"}, allow_redirects=False, timeout=30)
    assert r.status_code == 303 and r.headers["location"].startswith(ADMIN)
    config = get_config(web.engine, SyncTarget.USER_DIRECTORY)
    assert (config.enabled, config.frequency_minutes) == (False, 90)  # unchecked box = disabled
    page = s.get(web.url + ADMIN, timeout=30)
    assert "User directory saved: disabled, every 90 minutes." in page.text
    assert "saved" not in s.get(web.url + ADMIN, timeout=30).text.split("<main>")[1].split("Sync targets")[0]  # flash shown once
    s.post(web.url + f"{ADMIN}/USER_DIRECTORY/settings", data={"csrf_token": token, "enabled": "on", "frequency_minutes": "1440"}, timeout=30)
    config = get_config(web.engine, SyncTarget.USER_DIRECTORY)
    assert (config.enabled, config.frequency_minutes) == (True, 1440)


@pytest.mark.parametrize(
    "value, message",
    [("0", "between 1 and 43200"), ("43201", "between 1 and 43200"), ("ten", "whole number"), ("", "frequency is required"), ("2.5", "whole number")],
)
def test_invalid_frequency_is_a_400_page_with_the_message_by_the_field(web, value, message):
    s = web.session()
    before = get_config(web.engine, SyncTarget.COURSE_CATALOG)
    r = s.post(web.url + f"{ADMIN}/COURSE_CATALOG/settings", data={"csrf_token": csrf(s, web.url), "enabled": "on", "frequency_minutes": value}, timeout=30)
    assert r.status_code == 400
    assert message in r.text
    assert 'id="frequency-course_catalog-error" role="alert"' in r.text and 'aria-invalid="true"' in r.text
    assert get_config(web.engine, SyncTarget.COURSE_CATALOG) == before


def test_csrf_and_unknown_target(web):
    s = web.session()
    token = csrf(s, web.url)
    url = web.url + f"{ADMIN}/COURSE_CATALOG/settings"
    assert s.post(url, data={"frequency_minutes": "5"}, timeout=30).status_code == 403
    assert s.post(url, data={"csrf_token": "forged", "frequency_minutes": "5"}, timeout=30).status_code == 403
    other = web.session()  # a different browser: its cookie does not match this token
    csrf(other, web.url)
    r = other.post(url, data={"csrf_token": token, "frequency_minutes": "5"}, timeout=30)
    assert r.status_code == 403 and "form has expired" in r.text
    r = s.post(url, data={"csrf_token": token, "frequency_minutes": "5"}, headers={"Origin": "https://evil.example"}, timeout=30)
    assert r.status_code == 403
    assert s.post(web.url + f"{ADMIN}/COURSE_CATALOG/run", data={"csrf_token": "x"}, timeout=30).status_code == 403
    assert get_config(web.engine, SyncTarget.COURSE_CATALOG).frequency_minutes == 60
    assert SyncHistory(web.engine).recent() == []
    r = s.post(web.url + f"{ADMIN}/NOPE/settings", data={"csrf_token": token, "frequency_minutes": "5"}, timeout=30)
    assert r.status_code == 404 and "no sync target called" in r.text


def test_run_now_claims_manual_and_launches_then_skips_while_running(web):
    s = web.session()
    token = csrf(s, web.url)
    r = s.post(web.url + f"{ADMIN}/ENROLLMENTS/run", data={"csrf_token": token}, allow_redirects=False, timeout=60)
    assert r.status_code == 303 and r.headers["location"] == ADMIN + "#target-enrollments"
    page = s.get(web.url + ADMIN, timeout=30).text
    assert "Enrollments sync started" in page
    (row,) = SyncHistory(web.engine).recent(target="ENROLLMENTS")
    assert (row.status, row.trigger) == ("RUNNING", "MANUAL")
    run = web.instance.get_run_by_id(row.dagster_run_id)
    assert run.job_name == "sync_enrollments"
    assert f'href="/runs/{row.dagster_run_id}"' in page
    assert ">queued<" in page  # the Dagster run waits for the daemon; the page says so
    page = s.post(web.url + f"{ADMIN}/ENROLLMENTS/run", data={"csrf_token": token}, timeout=60).text  # follows the 303
    assert "Enrollments not started: ENROLLMENTS is already syncing" in page
    assert f"(sync run #{row.id}, started " in page and f"Dagster run {row.dagster_run_id}" in page
    assert "Try again when it has finished." in page


def test_a_failed_launch_closes_the_claim_with_the_reason(web):
    """A web process whose workspace lacks the code location: GraphQL `launchRun` fails, the
    claimed row is closed FAILED with a short reason, and the answer says SKIPPED."""
    from moodle_assets.web.app import create_app, workspace_context
    from moodle_assets.web.serve import BackgroundServer

    empty = web.tmp / "empty_workspace.yaml"
    empty.write_text("load_from: []\n")
    with workspace_context(web.instance, empty) as context, BackgroundServer(create_app(context, web.settings)) as srv:
        r = web.session().post(
            srv.url + TRIGGER, json={"targets": ["COURSE_CATALOG"]}, headers={"x-sync-secret": SYNC_SECRET}, timeout=60
        )
    assert r.status_code == 202
    (result,) = r.json()
    assert result["outcome"] == "SKIPPED" and result["reason"].startswith("launch failed: ")
    assert "moodle_integration" in result["reason"]
    (row,) = SyncHistory(web.engine).recent()
    assert row.id == result["sync_run_id"] and row.status == "FAILED" and row.error == result["reason"]
    assert "Traceback" not in row.error and 'File "' not in row.error


def test_launcher_refuses_an_unknown_job(web):
    """`launchRun` through the webserver's own GraphQL server: Dagster's refusal becomes LaunchFailed."""
    from starlette.requests import Request

    from moodle_assets.web.app import AppWebserver
    from moodle_assets.web.launcher import LaunchFailed, launch_run

    webserver = AppWebserver(web.process_context, web.settings, [])
    request = Request({"type": "http", "method": "POST", "path": "/", "headers": [], "query_string": b""})
    with pytest.raises(LaunchFailed, match="PipelineNotFoundError.*no_such_job"):
        launch_run(webserver, request, "no_such_job", tags={})


# --- access control: MOODLE_INTEGRATION_WEB_TOKEN --------------------------------------------


@pytest.fixture
def locked(web):
    with web.variant(web_token=WEB_TOKEN) as variant:
        yield variant


def ws_handshake(url: str, headers: dict[str, str]) -> str:
    """The status line of a raw websocket upgrade to /graphql."""
    parts = urlsplit(url)
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (
        f"GET /graphql HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: graphql-ws\r\n{extra}\r\n"
    )
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(request.encode())
        return sock.recv(4096).decode("latin-1").split("\r\n", 1)[0]


def test_token_locks_ui_graphql_admin_and_websocket(locked):
    web, s = locked, locked.session()
    r = s.get(web.url + ADMIN, headers=HTML, allow_redirects=False, timeout=30)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fdashboard%2Fadmin%2Fintegration"
    assert s.get(web.url + "/runs", headers=HTML, allow_redirects=False, timeout=30).status_code == 303
    for method, path in [("POST", "/graphql"), ("GET", "/server_info"), ("GET", ADMIN), ("POST", f"{ADMIN}/COURSE_CATALOG/run")]:
        r = s.request(method, web.url + path, json={"query": "{ __typename }"}, timeout=30)
        assert r.status_code == 401, path
        assert r.headers["www-authenticate"].startswith("Bearer")
    assert graphql(s, web.url, "{ __typename }", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert " 403 " in ws_handshake(web.url, {}) + " "
    # the token as a bearer opens everything, websocket included
    bearer = {"Authorization": f"Bearer {WEB_TOKEN}"}
    assert graphql(s, web.url, "{ __typename }", headers=bearer).json()["data"]["__typename"] == "Query"
    assert s.get(web.url + ADMIN, headers=bearer, timeout=30).status_code == 200
    assert " 101 " in ws_handshake(web.url, bearer) + " "


def test_trigger_keeps_its_own_secret_behind_the_lock(locked):
    s = locked.session()
    r = s.post(locked.url + TRIGGER, json={"targets": ["USER_DIRECTORY"]}, headers={"x-sync-secret": SYNC_SECRET}, timeout=60)
    assert r.status_code == 202 and r.json()[0]["outcome"] == "LAUNCHED"
    r = s.post(locked.url + TRIGGER, json={"targets": ["USER_DIRECTORY"]}, headers={"Authorization": f"Bearer {WEB_TOKEN}"}, timeout=60)
    assert r.status_code == 401  # the web token is not the cron secret


def test_login_form_sets_a_signed_session_cookie(locked):
    web, s = locked, locked.session()
    login = s.get(web.url + "/login?next=%2Fruns%2Fabc", headers=HTML, timeout=30)
    assert login.status_code == 200 and 'type="password"' in login.text and '<label for="token">' in login.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', login.text).group(1)
    bad = s.post(web.url + "/login", data={"csrf_token": token, "token": "guess", "next": "/runs/abc"}, allow_redirects=False, timeout=30)
    assert bad.status_code == 401 and "not right" in bad.text and "moodle_session" not in s.cookies
    assert s.post(web.url + "/login", data={"csrf_token": "forged", "token": WEB_TOKEN}, allow_redirects=False, timeout=30).status_code == 403
    ok = s.post(web.url + "/login", data={"csrf_token": token, "token": WEB_TOKEN, "next": "/runs/abc"}, allow_redirects=False, timeout=30)
    assert ok.status_code == 303 and ok.headers["location"] == "/runs/abc"
    cookie = ok.headers["set-cookie"]
    assert "moodle_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
    assert WEB_TOKEN not in cookie
    assert s.get(web.url + ADMIN, timeout=30).status_code == 200
    assert graphql(s, web.url, "{ __typename }").status_code == 200
    session_cookie = s.cookies["moodle_session"]
    assert " 101 " in ws_handshake(web.url, {"Cookie": f"moodle_session={session_cookie}"}) + " "
    # tampered cookie: refused
    forged = web.session()
    forged.cookies.set("moodle_session", session_cookie[:-2] + "xx")
    assert forged.get(web.url + ADMIN, headers=HTML, allow_redirects=False, timeout=30).status_code == 303
    # open redirects are not followed
    ok = s.post(web.url + "/login", data={"csrf_token": token, "token": WEB_TOKEN, "next": "//evil.example/x"}, allow_redirects=False, timeout=30)
    assert ok.headers["location"] == ADMIN
    # sign out
    page = s.get(web.url + ADMIN, timeout=30).text
    assert "Sign out" in page
    out = s.post(web.url + "/logout", allow_redirects=False, timeout=30)
    assert out.status_code == 303 and "moodle_session" not in s.cookies
    assert s.get(web.url + ADMIN, headers=HTML, allow_redirects=False, timeout=30).status_code == 303


def test_graphql_client_with_the_token(locked):
    from dagster_graphql import DagsterGraphQLClient

    port = urlsplit(locked.url).port
    client = DagsterGraphQLClient("127.0.0.1", port_number=port, headers={"Authorization": f"Bearer {WEB_TOKEN}"})
    run_id = client.submit_job_execution(
        "sync_course_catalog",
        repository_location_name="moodle_integration",
        repository_name="__repository__",
        tags={"moodle/target": "COURSE_CATALOG", "moodle/trigger": "GRAPHQL"},
    )
    assert locked.instance.get_run_by_id(run_id).tags["moodle/trigger"] == "GRAPHQL"


def test_readme_curl_graphql_snippet_launches_a_tagged_run(web):
    """The curl example in moodle_assets/web/README.md, sent as written."""
    import json

    readme = (REPO_ROOT / "moodle_assets" / "web" / "README.md").read_text()
    body = readme.split("-d @- <<'EOF'\n", 1)[1].split("\nEOF", 1)[0]
    r = web.session().post(web.url + "/graphql", data=body, headers={"Content-Type": "application/json"}, timeout=60)
    launch = r.json()["data"]["launchRun"]
    assert launch["__typename"] == "LaunchRunSuccess", launch
    run = web.instance.get_run_by_id(launch["run"]["runId"])
    assert run.job_name == json.loads(body)["variables"]["p"]["selector"]["jobName"] == "sync_course_catalog"
    assert run.tags["moodle/target"] == "COURSE_CATALOG" and run.tags["moodle/trigger"] == "GRAPHQL"


def test_no_secret_in_any_response(web):
    """Every surface of the web process, asked here (not relying on other tests), with and without
    the secrets: no answer carries them back."""
    with web.variant(web_token=WEB_TOKEN) as locked:
        s = locked.session()
        bearer = {"Authorization": f"Bearer {WEB_TOKEN}"}
        answers = [
            s.post(locked.url + TRIGGER, json={"targets": [SYNC_SECRET]}, headers={"x-sync-secret": SYNC_SECRET},
                   timeout=60),
            s.post(locked.url + TRIGGER, json={"targets": ["COURSE_CATALOG"]},
                   headers={"x-sync-secret": SYNC_SECRET}, timeout=60),
            s.post(locked.url + TRIGGER, json={}, headers={"Authorization": f"Bearer {WEB_TOKEN}"}, timeout=60),
            s.get(locked.url + ADMIN, headers=bearer, timeout=30),
            s.get(locked.url + ADMIN, headers=HTML, allow_redirects=False, timeout=30),
            s.get(locked.url + "/login", headers=HTML, timeout=30),
            s.post(locked.url + "/login", data={"token": WEB_TOKEN, "csrf_token": "x"}, timeout=30),
            graphql(s, locked.url, "{ __typename }", headers=bearer),
        ]
    assert [a.status_code for a in answers] == [400, 202, 401, 200, 303, 200, 403, 200]
    for answer in answers:
        assert SYNC_SECRET not in answer.text and WEB_TOKEN not in answer.text
        assert all(SYNC_SECRET not in v and WEB_TOKEN not in v for v in answer.headers.values())
