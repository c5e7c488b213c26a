"""The page of one sync run's changes, over HTTP on the real web process."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import delete

from moodle_assets.core.clock import utcnow
from moodle_assets.core.targets import SyncStatus, SyncTarget, SyncTrigger
from moodle_assets.history import SyncHistory
from moodle_assets.store.changelog import ChangeLog
from moodle_assets.store.db import transaction
from moodle_assets.store.models import IntegrationChangeLog
from moodle_assets.web.changes import PAGE_SIZE, changes_path
from web_helpers import WEB_TOKEN

HTML = {"Accept": "text/html"}


@pytest.fixture
def web(queued_web):
    queued_web.reset_history()
    with transaction(queued_web.engine) as s:
        s.execute(delete(IntegrationChangeLog))
    return queued_web


def finished_run(web, target: SyncTarget, changes: list[tuple[str, str, str, list[str]]]) -> int:
    history = SyncHistory(web.engine)
    claim = history.claim(target, SyncTrigger.CLI)
    owner = history.take(claim.run_id, "dagster-run-x")
    with transaction(web.engine) as s:
        log = ChangeLog(target=target.value, run_id=claim.run_id)
        for entity, key, kind, columns in changes:
            log.add(entity, key, kind, columns)
        log.flush(s, now=utcnow())
    assert history.finish(owner, SyncStatus.SUCCESS)
    return claim.run_id


def rows_of(html: str) -> list[list[str]]:
    return [
        [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        for row in re.findall(r'<tr class="change">(.*?)</tr>', html, flags=re.S)
    ]


def test_the_page_lists_the_runs_changes_with_counts(web):
    other = finished_run(web, SyncTarget.USER_DIRECTORY, [("user", "3", "updated", ["email"])])
    run_id = finished_run(
        web,
        SyncTarget.ENROLLMENTS,
        [
            ("enrollment", "course 2 user 4", "deactivated", []),
            ("enrollment", "course 2 user 5", "inserted", []),
            ("enrollment", "course 3 user 4", "updated", ["roles", "last_access_at"]),
        ],
    )
    r = web.session().get(web.url + changes_path(run_id), headers=HTML, timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"].startswith("default-src 'none'")
    rows = rows_of(r.text)
    assert [row[1:] for row in rows] == [
        ["enrollment", "course 2 user 4", "deactivated", "-"],
        ["enrollment", "course 2 user 5", "inserted", "-"],
        ["enrollment", "course 3 user 4", "updated", "roles, last_access_at"],
    ]
    assert rows[0][0].endswith("UTC")
    assert '<b id="change-total">3</b>' in r.text and "<b>1</b> deactivated" in r.text and "<b>0</b> reactivated" in r.text
    assert f"Sync run #{run_id}" in r.text and "ENROLLMENTS" in r.text
    assert "course 2 user" not in web.session().get(web.url + changes_path(other), timeout=30).text


def test_a_run_without_changes_says_so_and_unknown_runs_are_404(web):
    run_id = finished_run(web, SyncTarget.COURSE_CATALOG, [])
    s = web.session()
    r = s.get(web.url + changes_path(run_id), timeout=30)
    assert r.status_code == 200 and "This run changed nothing" in r.text
    assert s.get(web.url + changes_path(run_id + 1000), timeout=30).status_code == 404
    assert s.get(web.url + "/dashboard/admin/integration/runs/abc/changes", timeout=30).status_code == 404
    assert s.get(web.url + changes_path(run_id) + "?page=0", timeout=30).status_code == 404
    post = s.post(web.url + changes_path(run_id), timeout=30)
    assert post.status_code == 405 and post.headers["allow"] == "GET"


def test_long_lists_are_paged(web):
    many = [("user", str(i), "inserted", []) for i in range(PAGE_SIZE + 20)]
    run_id = finished_run(web, SyncTarget.USER_DIRECTORY, many)
    s = web.session()
    first = s.get(web.url + changes_path(run_id), timeout=30).text
    assert len(rows_of(first)) == PAGE_SIZE and f'<b id="change-total">{PAGE_SIZE + 20}</b>' in first
    assert f'href="{changes_path(run_id)}?page=2"' in first
    second = s.get(web.url + changes_path(run_id) + "?page=2", timeout=30).text
    assert [row[2] for row in rows_of(second)] == [str(i) for i in range(PAGE_SIZE, PAGE_SIZE + 20)]


def test_the_page_is_behind_the_web_token_like_the_admin_page(web):
    run_id = finished_run(web, SyncTarget.ENROLLMENTS, [("enrollment", "course 2 user 4", "deactivated", [])])
    with web.variant(web_token=WEB_TOKEN) as locked:
        s = locked.session()
        r = s.get(locked.url + changes_path(run_id), headers=HTML, allow_redirects=False, timeout=30)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
        assert s.get(locked.url + changes_path(run_id), timeout=30).status_code == 401
        opened = s.get(locked.url + changes_path(run_id), headers={"Authorization": f"Bearer {WEB_TOKEN}"}, timeout=30)
        assert opened.status_code == 200 and "course 2 user 4" in opened.text
