"""The admin page's "Moodle connection" panel: the `check` report in the browser, refreshed in the
background and on "Check again" (CSRF-protected), never showing the token."""

from __future__ import annotations

import re
import time

from web_helpers import ADMIN, EMULATOR_TOKEN

CHECK = ADMIN + "/connection/check"


def csrf(session, url) -> str:
    page = session.get(url + ADMIN, timeout=30)
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def panel(html: str) -> str:
    start = html.index('id="moodle-connection"')
    return html[start : html.index("</section>", start)]


def wait_for_report(session, url, timeout=30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = panel(session.get(url + ADMIN, timeout=30).text)
        if "data-check-status" in text or time.monotonic() > deadline:
            return text
        time.sleep(0.5)


def test_the_panel_shows_the_check_and_the_token_it_ran_as(live_web):
    s = live_web.session()
    text = wait_for_report(s, live_web.url)
    assert 'data-connection="ok"' in text and ">ready<" in text
    assert "admin (Moodle user id 2, a site administrator)" in text
    assert "The token&#39;s user is a site administrator" in text
    assert EMULATOR_TOKEN not in s.get(live_web.url + ADMIN, timeout=30).text


def test_check_again_is_a_csrf_protected_post_that_redirects_back(live_web):
    s = live_web.session()
    assert s.get(live_web.url + CHECK, timeout=30).status_code == 405
    assert s.post(live_web.url + CHECK, data={}, timeout=30).status_code == 403
    r = s.post(live_web.url + CHECK, data={"csrf_token": csrf(s, live_web.url)}, allow_redirects=False, timeout=60)
    assert r.status_code == 303 and r.headers["location"] == ADMIN + "#moodle-connection"
    page = s.get(live_web.url + ADMIN, timeout=30).text
    assert "Moodle connection checked: a full sync can run and sees everything." in page


def test_a_weaker_token_shows_what_it_lacks_and_the_fix(live_web):
    with live_web.variant(moodle_token=EMULATOR_TOKEN + "-reader") as web:
        s = web.session()
        s.post(web.url + CHECK, data={"csrf_token": csrf(s, web.url)}, timeout=60)
        text = panel(s.get(web.url + ADMIN, timeout=30).text)
    assert 'data-connection="fail"' in text and "a sync cannot run" in text
    assert 'data-check-status="fail"' in text and "moodle/course:enrolreview" in text
    assert "Fix: allow moodle/course:enrolreview in the token user" in text
    assert "not a site administrator" in text
    assert EMULATOR_TOKEN not in text


def test_a_runs_warning_shows_in_its_history_row(live_web):
    from moodle_assets.core.counts import RunCounts
    from moodle_assets.core.targets import SyncStatus, SyncTarget, SyncTrigger
    from moodle_assets.history import SyncHistory

    live_web.reset_history()
    history = SyncHistory(live_web.engine)
    claim = history.claim(SyncTarget.USER_DIRECTORY, SyncTrigger.CLI)
    owner = history.take(claim.run_id, "dagster-run-id")
    history.note_token(owner, user_id=17, username="capuser", is_site_admin=False)
    history.finish(owner, SyncStatus.SUCCESS, counts=RunCounts(fetched=4),
                   warning="users: Moodle listed 4 users to this token; 12 stored users not listed were kept active")
    page = live_web.session().get(live_web.url + ADMIN, timeout=30).text
    row = page[page.index(f'data-sync-run="{claim.run_id}"'):]
    assert "warning: users: Moodle listed 4 users to this token" in row[: row.index("</tr>")]
    assert "Last sync ran as capuser (id 17) (sync run #" in panel(page)
