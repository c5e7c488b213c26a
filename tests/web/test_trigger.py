"""The HTTP trigger over real HTTP: every status of the contract, concurrency, no secret leaks.

Runs are launched into a queued coordinator with no daemon, so they are created in Dagster
(and the claims stay RUNNING) but never execute: fast, and nothing races the assertions.
"""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from moodle_assets.history import SyncHistory
from moodle_assets.core.clock import utcnow
from moodle_assets.core.targets import TAG_SYNC_RUN_IDS, TAG_TARGET, TAG_TRIGGER

from web_helpers import EMULATOR_TOKEN, SYNC_SECRET, TRIGGER

ALL = ["COURSE_CATALOG", "USER_DIRECTORY", "ENROLLMENTS"]
AUTH = {"x-sync-secret": SYNC_SECRET}


@pytest.fixture
def web(queued_web):
    queued_web.reset_history()
    return queued_web


def post(web, body=None, headers=AUTH, raw: bytes | None = None, session=None):
    session = session or web.session()
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    hdrs = dict(headers or {})
    if data is not None:
        hdrs.setdefault("content-type", "application/json")
    return session.post(web.url + TRIGGER, data=data, headers=hdrs, timeout=60)


def test_202_launches_named_targets_in_one_run_with_claimed_rows(web):
    r = post(web, {"targets": ["ENROLLMENTS", "course_catalog"]})
    assert r.status_code == 202, r.text
    results = r.json()
    assert isinstance(results, list)
    assert [x["target"] for x in results] == ["COURSE_CATALOG", "ENROLLMENTS"]  # dependency order
    assert all(set(x) == {"target", "outcome", "reason", "sync_run_id", "dagster_run_id", "held_by"} for x in results)
    assert {x["outcome"] for x in results} == {"LAUNCHED"} and {x["held_by"] for x in results} == {None}
    run_ids = {x["dagster_run_id"] for x in results}
    assert len(run_ids) == 1  # one sync_all run restricted to the two targets
    run = web.instance.get_run_by_id(run_ids.pop())
    assert run.job_name == "sync_all"
    assert {k.to_user_string() for k in run.asset_selection} == {"course_catalog", "enrollments"}
    assert run.tags[TAG_TRIGGER] == "API"
    assert run.tags[TAG_TARGET] == "COURSE_CATALOG,ENROLLMENTS"
    assert json.loads(run.tags[TAG_SYNC_RUN_IDS]) == {x["target"]: x["sync_run_id"] for x in results}
    rows = {r.id: r for r in SyncHistory(web.engine).recent()}
    for x in results:
        row = rows[x["sync_run_id"]]
        assert (row.status, row.trigger, row.dagster_run_id) == ("RUNNING", "API", run.run_id)


def test_202_single_target_uses_its_own_job_and_bearer_header(web):
    r = post(web, {"targets": ["USER_DIRECTORY"], "force": False}, headers={"Authorization": f"Bearer {SYNC_SECRET}"})
    assert r.status_code == 202, r.text
    (result,) = r.json()
    assert result["outcome"] == "LAUNCHED" and result["reason"] is None
    assert web.instance.get_run_by_id(result["dagster_run_id"]).job_name == "sync_user_directory"
    # A second call while the first is in flight is SKIPPED, with the reason and its own history row.
    (again,) = post(web, {"targets": ["USER_DIRECTORY"]}).json()
    assert again["outcome"] == "SKIPPED" and "already syncing" in again["reason"]
    assert again["dagster_run_id"] is None and again["sync_run_id"] not in (None, result["sync_run_id"])
    # ... naming the live holder, as the CLI (exit 75) and the admin page do: try again later.
    holder = again["held_by"]
    assert holder["sync_run_id"] == result["sync_run_id"] and holder["dagster_run_id"] == result["dagster_run_id"]
    assert holder["started_at"] and holder["pid"] is None  # queued: no worker has taken it yet
    assert f"sync run #{result['sync_run_id']}, started " in again["reason"]
    assert f"Dagster run {result['dagster_run_id']}" in again["reason"]
    # force starts one anyway
    (forced,) = post(web, {"targets": ["USER_DIRECTORY"], "force": True}).json()
    assert forced["outcome"] == "LAUNCHED"


def test_202_without_body_runs_every_enabled_due_target(web):
    from schedules.config_table import update_config
    from moodle_assets.core.targets import SyncTarget

    update_config(web.engine, SyncTarget.USER_DIRECTORY, enabled=False)
    from moodle_assets.store.db import transaction
    from moodle_assets.store.models import IntegrationSyncConfig

    with transaction(web.engine) as s:
        s.get(IntegrationSyncConfig, "ENROLLMENTS").next_run_at = utcnow() + timedelta(hours=2)
    r = post(web)
    assert r.status_code == 202, r.text
    by = {x["target"]: x for x in r.json()}
    assert list(by) == ALL
    assert by["COURSE_CATALOG"]["outcome"] == "LAUNCHED"
    assert by["USER_DIRECTORY"]["outcome"] == "SKIPPED" and by["USER_DIRECTORY"]["reason"].startswith("disabled")
    assert by["ENROLLMENTS"]["outcome"] == "SKIPPED" and by["ENROLLMENTS"]["reason"].startswith("not due until")
    assert by["USER_DIRECTORY"]["sync_run_id"] is None and by["ENROLLMENTS"]["sync_run_id"] is None
    # The launch moved the catalog's schedule on: an immediate second poll finds nothing due.
    again = {x["target"]: x for x in post(web, {}).json()}
    assert again["COURSE_CATALOG"]["outcome"] == "SKIPPED" and "not due" in again["COURSE_CATALOG"]["reason"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-sync-secret": "wrong"},
        {"x-sync-secret": SYNC_SECRET + "x"},
        {"x-sync-secret": ""},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {SYNC_SECRET}"},
        {"Authorization": SYNC_SECRET},
    ],
    ids=["missing", "wrong", "longer", "empty", "bearer-wrong", "basic-scheme", "no-scheme"],
)
def test_401_bad_or_missing_secret(web, headers):
    r = post(web, {"targets": ["COURSE_CATALOG"]}, headers=headers)
    assert r.status_code == 401
    assert "secret" in r.json()["error"]
    assert SyncHistory(web.engine).recent() == []  # nothing claimed


def test_503_when_no_secret_configured(web):
    with web.variant(sync_secret=None) as open_web:
        r = post(open_web, {"targets": ["COURSE_CATALOG"]})
        assert r.status_code == 503
        assert "MOODLE_SYNC_CRON_SECRET" in r.json()["error"]
        assert post(open_web, None, headers={}).status_code == 503
    assert SyncHistory(web.engine).recent() == []


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (b"null", "must be a JSON object"),
        (b'"COURSE_CATALOG"', "must be a JSON object"),
        (b'{"targets": ["NOPE"]}', "unknown target 'NOPE'"),
        (b'{"targets": "COURSE_CATALOG"}', "targets must be a list"),
        (b'{"targets": []}', "targets is empty"),
        (b'{"targets": [1]}', "targets must contain strings"),
        (b'{"force": "yes"}', "force must be true or false"),
        (b'{"force": 1}', "force must be true or false"),
        (b'{"target": ["COURSE_CATALOG"]}', "unknown key(s) 'target'"),
        (b"\xff\xfe{}", "UTF-8"),
    ],
)
def test_400_bad_body_with_precise_message(web, raw, message):
    r = post(web, raw=raw)
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]
    assert SyncHistory(web.engine).recent() == []


def test_413_body_over_16_kib(web):
    big = json.dumps({"targets": ["COURSE_CATALOG"], "pad": "x" * 20000}).encode()
    assert post(web, raw=big).status_code == 413
    # chunked, no Content-Length: still refused without reading everything
    r = web.session().post(web.url + TRIGGER, data=iter([b'{"targets": ["', b"x" * 17000, b'"]}']), headers=AUTH, timeout=30)
    assert r.status_code == 413
    assert SyncHistory(web.engine).recent() == []


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
def test_405_other_methods_do_not_fall_through_to_the_ui(web, method):
    r = web.session().request(method, web.url + TRIGGER, headers=AUTH, timeout=30)
    assert r.status_code == 405
    assert r.headers["allow"] == "POST"
    assert "text/html" not in r.headers.get("content-type", "")


def test_50_concurrent_calls_start_one_run_per_target(web):
    session_per_call = [web.session() for _ in range(50)]
    with ThreadPoolExecutor(max_workers=50) as pool:
        responses = list(pool.map(lambda s: post(web, {"targets": ALL}, session=s), session_per_call))
    assert [r.status_code for r in responses] == [202] * 50
    results = [x for r in responses for x in r.json()]
    assert len(results) == 150
    for target in ALL:
        mine = [x for x in results if x["target"] == target]
        launched = [x for x in mine if x["outcome"] == "LAUNCHED"]
        skipped = [x for x in mine if x["outcome"] == "SKIPPED"]
        assert len(launched) == 1, (target, launched)
        assert len(skipped) == 49
        assert all("already syncing" in x["reason"] and x["dagster_run_id"] is None for x in skipped)
        assert web.instance.get_run_by_id(launched[0]["dagster_run_id"]) is not None
    rows = SyncHistory(web.engine).recent(limit=500)
    assert sorted(r.target for r in rows if r.status == "RUNNING") == sorted(ALL)
    assert sum(r.status == "SKIPPED" for r in rows) == 147
    # Every Dagster run created carries exactly the targets it claimed.
    run_ids = {x["dagster_run_id"] for x in results if x["outcome"] == "LAUNCHED"}
    for run_id in run_ids:
        run = web.instance.get_run_by_id(run_id)
        claimed = json.loads(run.tags[TAG_SYNC_RUN_IDS])
        assert set(claimed) == {x["target"] for x in results if x["dagster_run_id"] == run_id}


def test_secrets_never_in_responses_or_logs(web, caplog, capfd):
    import logging

    caplog.set_level(logging.DEBUG)
    seen = []
    session = web.session()
    session.hooks["response"].append(lambda r, *a, **k: seen.append(r))
    post(web, {"targets": ["COURSE_CATALOG"]}, session=session)
    post(web, {"targets": ["NOPE"]}, session=session)
    post(web, {"targets": [SYNC_SECRET]}, session=session)  # an echo attempt
    post(web, {"targets": [EMULATOR_TOKEN]}, session=session)
    post(web, {}, headers={"x-sync-secret": "wrong"}, session=session)
    post(web, {}, headers={"Authorization": f"Bearer {SYNC_SECRET}"}, session=session)
    session.get(web.url + "/dashboard/admin/integration", timeout=30)
    out, err = capfd.readouterr()
    assert [r.status_code for r in seen] == [202, 400, 400, 400, 401, 202, 200]  # this test's own requests
    assert "unknown target" in seen[2].json()["error"]  # the echo attempt was answered, masked
    everything = [r.text for r in seen] + [caplog.text, out, err]
    for text in everything:
        assert SYNC_SECRET not in text
        assert EMULATOR_TOKEN not in text
