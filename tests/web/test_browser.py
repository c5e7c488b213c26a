"""The admin page in real headless Chromium (Debian's `chromium`, driven by Playwright).

The web process launches runs for real (immediate coordinator) against the bundled emulator,
so "Run now" and a GraphQL launch are seen to run and finish, and the Dagster run page opens
from the link. The last test takes the admin page screenshot the README shows
(docs/admin-page.png, refreshed with UPDATE_SCREENSHOTS=1).
"""
from __future__ import annotations

import os
import re
import shutil
import time
from urllib.parse import urlsplit

import pytest

from moodle_assets.core.targets import SyncTarget
from schedules.config_table import get_config
from web_helpers import ADMIN, REPO_ROOT

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = [
    "--no-sandbox", "--headless=new", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]
RUN_TIMEOUT_S = 120
# The README's screenshot is refreshed on request only, so a test run leaves the tree clean:
#   UPDATE_SCREENSHOTS=1 ./dev test tests/web/test_browser.py
README_SCREENSHOT = REPO_ROOT / "docs" / "admin-page.png"


@pytest.fixture(scope="module")
def browser():
    executable = shutil.which("chromium")
    if executable is None:
        message = "Debian's chromium is not installed (apt-get install -y chromium; ./dev test installs it as root)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


def wait_for_row(page, url: str, panel: str, predicate, what: str, timeout_s: float = RUN_TIMEOUT_S):
    """Reload the admin page until a run row in `panel` satisfies `predicate`; return the row."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = page.locator(f"#{panel} tbody tr[data-sync-run]")
        for i in range(rows.count()):
            row = rows.nth(i)
            if predicate(row):
                return row
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}; panel shows:\n{page.locator('#' + panel).inner_text()}")
        time.sleep(1.0)
        page.goto(url)


def test_change_frequency_and_disable_a_target(page, live_web):
    from playwright.sync_api import expect

    live_web.reset_history(enabled=True, frequency=60)
    page.goto(live_web.url + ADMIN)
    expect(page).to_have_title("Moodle integration · Admin")
    users = page.locator("#target-user_directory")
    users.get_by_label("Frequency (minutes)").fill("90")
    users.get_by_role("button", name="Save schedule").click()
    expect(page.get_by_role("status")).to_have_text("User directory saved: enabled, every 90 minutes.")
    expect(page.locator("#target-user_directory")).to_contain_text("Enabled · every 90 minutes")
    assert get_config(live_web.engine, SyncTarget.USER_DIRECTORY).frequency_minutes == 90

    # Out of range: the page comes back with the message next to the field, nothing saved.
    page.locator("#target-user_directory").get_by_label("Frequency (minutes)").fill("0")
    page.locator("#target-user_directory").get_by_role("button", name="Save schedule").click()
    error = page.locator("#frequency-user_directory-error")
    expect(error).to_contain_text("frequency must be between 1 and 43200 minutes")
    expect(page.locator("#frequency-user_directory")).to_have_attribute("aria-invalid", "true")
    assert get_config(live_web.engine, SyncTarget.USER_DIRECTORY).frequency_minutes == 90

    page.goto(live_web.url + ADMIN)
    enrollments = page.locator("#target-enrollments")
    switch = enrollments.get_by_role("switch", name="Enabled (sync on schedule)")
    expect(switch).to_be_checked()
    switch.uncheck()
    enrollments.get_by_role("button", name="Save schedule").click()
    expect(page.get_by_role("status")).to_have_text("Enrollments saved: disabled, every hour.")
    enrollments = page.locator("#target-enrollments")
    expect(enrollments.locator(".pill.st-disabled")).to_have_text("Disabled")
    expect(enrollments).to_contain_text("not scheduled (disabled)")
    expect(enrollments.get_by_role("switch", name="Enabled (sync on schedule)")).not_to_be_checked()
    assert get_config(live_web.engine, SyncTarget.ENROLLMENTS).enabled is False


def test_run_now_shows_the_run_finish_and_links_to_the_dagster_run_page(page, live_web):
    from playwright.sync_api import expect

    live_web.reset_history(enabled=True, frequency=60)
    url = live_web.url + ADMIN
    page.goto(url)
    page.get_by_role("button", name="Run now: Course catalog").click()
    expect(page.get_by_role("status")).to_contain_text("Course catalog sync started")
    assert page.url.endswith("#target-course_catalog")
    row = wait_for_row(
        page, url, "target-course_catalog",
        lambda r: r.get_attribute("data-status") in ("SUCCESS", "FAILED"),
        "the Run now sync to finish",
    )
    assert row.get_attribute("data-status") == "SUCCESS", row.inner_text()
    expect(row).to_contain_text("manual")
    expect(row).to_contain_text("fetched")
    link = row.get_by_role("link", name=re.compile("^Dagster run "))
    run_id = link.get_attribute("href").rsplit("/", 1)[1]
    assert len(run_id) == 36
    link.click()
    page.wait_for_url(f"**/runs/{run_id}")
    # The Dagster UI (a JavaScript app) renders the run: its job name and final status.
    expect(page.get_by_text("sync_course_catalog").first).to_be_visible(timeout=60_000)
    expect(page.get_by_text("Success", exact=False).first).to_be_visible(timeout=60_000)


def test_graphql_launch_shows_up_in_the_admin_page(page, live_web, tmp_path):
    from dagster_graphql import DagsterGraphQLClient

    url = live_web.url + ADMIN
    client = DagsterGraphQLClient("127.0.0.1", port_number=urlsplit(live_web.url).port)
    run_id = client.submit_job_execution(
        "sync_user_directory",
        repository_location_name="moodle_integration",
        repository_name="__repository__",
        tags={"moodle/target": "USER_DIRECTORY", "moodle/trigger": "GRAPHQL"},
    )
    page.goto(url)
    row = wait_for_row(
        page, url, "target-user_directory",
        lambda r: r.get_by_role("link", name=re.compile("^Dagster run ")).count() == 1
        and r.get_by_role("link", name=re.compile("^Dagster run ")).get_attribute("href") == f"/runs/{run_id}"
        and r.get_attribute("data-status") in ("SUCCESS", "FAILED"),
        "the GraphQL-launched run to appear and finish",
    )
    assert row.get_attribute("data-status") == "SUCCESS", row.inner_text()
    assert "graphql" in row.inner_text()
    shot = README_SCREENSHOT if os.environ.get("UPDATE_SCREENSHOTS") else tmp_path / "admin-page.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.goto(url)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
