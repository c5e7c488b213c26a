"""The admin page tells the truth about runs, in real headless Chromium (Debian's `chromium`).

Each panel state: never run, running ("running since"), a real success whose counts add up and
link to its changes page, a failure with "–" for counts and its cause folded, ENROLLMENTS not run
because its upstream failed in the same Dagster run (a real run, launched by the HTTP trigger,
closed at once by the failing step), and the frequency rule in the form's message.
"""
from __future__ import annotations

import re
import time

import pytest
import requests

from moodle_assets.core.targets import SyncStatus, SyncTarget, SyncTrigger
from moodle_assets.history import SyncHistory
from test_browser import browser, page, wait_for_row  # noqa: F401  (the browser fixtures)
from web_helpers import ADMIN, SYNC_SECRET, TRIGGER

pytestmark = pytest.mark.browser


def panel(page, slug: str):
    return page.locator(f"#target-{slug}")


def test_never_run(page, live_web):
    from playwright.sync_api import expect

    live_web.reset_history()
    page.goto(live_web.url + ADMIN)
    users = panel(page, "user_directory")
    expect(users.locator(".last-run")).to_have_text("never")
    expect(users.locator(".last-run .pill")).to_have_count(0)
    expect(users.locator("tbody")).to_contain_text("No runs yet")
    expect(users.locator(".pill.st-running")).to_have_count(0)


def test_running_reads_running_since_and_last_run_is_that_row(page, live_web):
    from playwright.sync_api import expect

    live_web.reset_history()
    history = SyncHistory(live_web.engine)
    done = history.claim(SyncTarget.USER_DIRECTORY, SyncTrigger.MANUAL)
    owner = history.take(done.run_id, "dagster-run-earlier")
    history.finish(owner, SyncStatus.SUCCESS)
    claim = history.claim(SyncTarget.USER_DIRECTORY, SyncTrigger.MANUAL)
    mine = history.take(claim.run_id, "dagster-run-now")
    try:
        page.goto(live_web.url + ADMIN)
        users = panel(page, "user_directory")
        # The new attempt's time with its own status, not the previous run's "success".
        expect(users.locator(".last-run")).to_contain_text(re.compile(r"^running since a few seconds ago"))
        expect(users.locator(".last-run .pill")).to_have_text("running")
        row = users.locator(f"tr[data-sync-run='{claim.run_id}']")
        expect(row.locator(".no-counts")).to_have_text("…")
        expect(row.locator(".changes")).to_have_count(0)
    finally:
        history.finish(mine, SyncStatus.FAILED, error="test over")


def test_success_shows_counts_that_add_up_and_a_changes_link(page, live_web):
    from playwright.sync_api import expect

    live_web.reset_history()
    url = live_web.url + ADMIN
    page.goto(url)
    page.get_by_role("button", name="Run now: Course catalog").click()
    expect(page.get_by_role("status")).to_contain_text("Course catalog sync started")
    row = wait_for_row(page, url, "target-course_catalog",
                       lambda r: r.get_attribute("data-status") in ("SUCCESS", "FAILED"), "the sync to finish")
    assert row.get_attribute("data-status") == "SUCCESS", row.inner_text()
    run_id = int(row.get_attribute("data-sync-run"))
    counts = {name: int(row.locator(f"[data-count='{name}'] b").inner_text())
              for name in ("fetched", "inserted", "updated", "unchanged", "rejected", "skipped")}
    assert counts["fetched"] > 0
    assert counts["fetched"] == sum(v for k, v in counts.items() if k != "fetched")
    assert counts["skipped"] >= 1  # the site course, left out on purpose and shown
    cells = row.locator("td.rows").inner_text()
    assert re.search(r"fetched\s*\d+\s*=\s*inserted\s*\d+\s*\+\s*updated", cells), cells
    link = row.get_by_role("link", name=f"changes of sync run {run_id}")
    expect(link).to_have_attribute("href", f"{ADMIN}/runs/{run_id}/changes")
    expect(link).to_have_text("changes")
    # Duration is the sync's own time, the queue shown apart.
    expect(row.locator("td.duration")).to_contain_text(re.compile(r"\d"))
    expect(row.locator("td.duration .queued")).to_contain_text("queued")
    catalog = panel(page, "course_catalog")
    expect(catalog.locator(".last-run .pill")).to_have_text("success")
    expect(catalog.locator(".pill.st-running")).to_have_count(0)


def test_failure_shows_a_dash_for_counts_and_a_folded_cause(page, live_web):
    from playwright.sync_api import expect

    live_web.reset_history()
    history = SyncHistory(live_web.engine)
    claim = history.claim(SyncTarget.COURSE_CATALOG, SyncTrigger.MANUAL)
    owner = history.take(claim.run_id, "dagster-run-failed")
    tail = "; ".join(f"detail {i} of what the server said" for i in range(14))
    error = f"MoodleTransientError: Moodle core_course_get_categories: HTTP 503 from the site ({tail})\nsecond line"
    assert len(error) > 450
    history.finish(owner, SyncStatus.FAILED, error=error)
    page.goto(live_web.url + ADMIN)
    row = panel(page, "course_catalog").locator(f"tr[data-sync-run='{claim.run_id}']")
    expect(row.locator(".no-counts")).to_have_text("–")
    expect(row.locator("[data-count]")).to_have_count(0)
    expect(row.locator(".changes")).to_have_count(0)
    summary = row.locator("details summary")
    short = summary.inner_text()
    assert short.startswith("MoodleTransientError: Moodle core_course_get_categories: HTTP 503") and len(short) <= 120
    full = row.locator("details .full")
    expect(full).to_be_hidden()
    summary.click()
    expect(full).to_be_visible()
    expect(full).to_contain_text("detail 13 of what the server said")
    expect(full).to_contain_text("second line")
    expect(panel(page, "course_catalog").locator(".last-run .pill")).to_have_text("failed")


def test_enrollments_not_run_when_upstream_failed_is_shown_at_once(page, live_web, module_emulator):
    from playwright.sync_api import expect

    live_web.reset_history()
    history = SyncHistory(live_web.engine)
    for target in (SyncTarget.COURSE_CATALOG, SyncTarget.USER_DIRECTORY):  # synced once before
        owner = history.take(history.claim(target, SyncTrigger.MANUAL).run_id, "earlier")
        history.finish(owner, SyncStatus.SUCCESS)
    requests.post(f"{module_emulator.url}/__emulator__/faults", timeout=5, json={
        "script": [{"fault": "http_503", "count": 1000, "wsfunction": "core_user_get_users_by_field"}]})
    try:
        answer = requests.post(live_web.url + TRIGGER, headers={"x-sync-secret": SYNC_SECRET}, timeout=60,
                               json={"targets": ["USER_DIRECTORY", "ENROLLMENTS"]})
        assert answer.status_code == 202, answer.text
        url = live_web.url + ADMIN
        page.goto(url)
        failed = wait_for_row(page, url, "target-user_directory",
                              lambda r: r.get_attribute("data-status") == "FAILED", "USER_DIRECTORY to fail")
        failed_at = time.monotonic()
        # ENROLLMENTS is closed by the failing step itself: no waiting for a sensor sweep.
        row = wait_for_row(page, url, "target-enrollments",
                           lambda r: r.get_attribute("data-status") != "RUNNING", "ENROLLMENTS closed", timeout_s=10)
        assert time.monotonic() - failed_at < 10
        expect(row.locator(".pill")).to_have_text("not run")
        expect(row).to_contain_text("not run: upstream failed (USER_DIRECTORY failed in the same Dagster run)")
        expect(row.locator(".no-counts")).to_have_text("–")
        enrollments = panel(page, "enrollments")
        expect(enrollments.locator(".last-run .pill")).to_have_text("not run")
        expect(enrollments.locator(".pill.st-running")).to_have_count(0)
        assert failed.get_attribute("data-status") == "FAILED"
    finally:
        requests.post(f"{module_emulator.url}/__emulator__/faults", timeout=5, json={"script": []})


def test_frequency_messages_say_the_real_rule(page, live_web):
    from playwright.sync_api import expect

    live_web.reset_history()
    page.goto(live_web.url + ADMIN)
    field = panel(page, "enrollments").get_by_label("Frequency (minutes)")
    for value, expected in (
        ("2.5", "frequency must be between 1 and 43200 minutes (30 days), a whole number; got '2.5'"),
        ("43201", "frequency must be between 1 and 43200 minutes (30 days), got 43201"),
        ("", "frequency is required: a whole number of minutes between 1 and 43200 (30 days)"),
    ):
        field = panel(page, "enrollments").get_by_label("Frequency (minutes)")
        field.fill(value)
        panel(page, "enrollments").get_by_role("button", name="Save schedule").click()
        expect(page.locator("#frequency-enrollments-error")).to_have_text(expected)
        expect(page.locator("#frequency-enrollments-hint")).to_contain_text("1 to 43200")
