"""The admin page's "Moodle connection" panel: `moodle-integration check`, in the browser.

The same report as the CLI (`moodle_assets.sync.check`), kept in memory per web process. Viewing
the page starts a check in the background when there is none or it is older than
`STALE_AFTER`; the page never waits for Moodle. "Check again" (a CSRF-protected POST) runs one
now and redirects back. Neither the token nor site info's private access key is ever shown.

Route: `POST /dashboard/admin/integration/connection/check` (405 for other methods), added by
admin.py's routes.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import timedelta

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from resources.moodle_client import ClientSettings, MoodleClient

from ..core.clock import utcnow
from ..settings import Settings
from ..sync.check import EXIT_FAIL, EXIT_OK, EXIT_PARTIAL, CheckReport, config_error_report, run_check
from .common import ADMIN_PATH, any_method_route, log

CHECK_PATH = ADMIN_PATH + "/connection/check"
STALE_AFTER = timedelta(minutes=10)
MARKS = {"ok": "✓", "fail": "✗", "warn": "!", "note": "·", "skip": "–"}


class ConnectionStatus:
    """The latest check of one web process, and at most one check running at a time."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = threading.Lock()
        self._running = threading.Lock()
        self._report: CheckReport | None = None

    @property
    def report(self) -> CheckReport | None:
        with self._lock:
            return self._report

    @property
    def checking(self) -> bool:
        return self._running.locked()

    def check_now(self) -> CheckReport:
        with self._running:
            report = self._check()
        with self._lock:
            self._report = report
        return report

    def refresh_in_background(self) -> None:
        """Start a check unless one runs or the last one is fresh."""
        report = self.report
        if self.checking or (report is not None and utcnow() - report.checked_at < STALE_AFTER):
            return
        threading.Thread(target=self._background, name="moodle-connection-check", daemon=True).start()

    def _background(self) -> None:
        if not self._running.acquire(blocking=False):
            return
        try:
            report = self._check()
            with self._lock:
                self._report = report
        except Exception:  # never let a background check take the page down
            log.exception("Moodle connection check failed")
        finally:
            self._running.release()

    def _check(self) -> CheckReport:
        settings = self.settings
        if not settings.moodle_url or not settings.moodle_token:
            missing = "MOODLE_URL" if not settings.moodle_url else "MOODLE_TOKEN"
            return config_error_report(settings.moodle_url or "(unset)", f"{missing} is not set")
        options = settings.moodle_client_options()
        options["max_retries"] = 0
        client = MoodleClient(
            settings.moodle_url,
            settings.moodle_token,
            ClientSettings(settings.moodle_url, **options),  # type: ignore[arg-type]
        )
        try:
            return run_check(client, settings.moodle_url)
        finally:
            client.close()


def connection_status(webserver) -> ConnectionStatus:
    status = getattr(webserver, "moodle_connection", None)
    if status is None:
        status = ConnectionStatus(webserver.settings)
        webserver.moodle_connection = status
    return status


@dataclass
class ConnectionView:
    state: str  # ok, partial, fail, unchecked
    label: str
    report: CheckReport | None
    checking: bool
    checked_ago: str | None
    last_token: str | None
    last_token_run: int | None

    @property
    def lines(self) -> list[dict]:
        if self.report is None:
            return []
        return [
            {
                "mark": MARKS[line.status],
                "status": line.status,
                "title": line.title,
                "detail": line.detail,
                "fix": line.fix if line.status in ("fail", "warn", "note") else None,
            }
            for line in self.report.lines
        ]


_STATE = {
    EXIT_OK: ("ok", "ready"),
    EXIT_PARTIAL: ("partial", "sees less than everything"),
    EXIT_FAIL: ("fail", "a sync cannot run"),
}


def connection_view(webserver, relative) -> ConnectionView:
    """What the panel shows; starts a background check when there is none or it is stale."""
    status = connection_status(webserver)
    status.refresh_in_background()
    report = status.report
    last = next((r for r in webserver.history.recent(limit=20) if r.token_user_id is not None), None)
    if report is None:
        state, label = "unchecked", "not checked yet"
    else:
        state, label = _STATE.get(report.exit_code, ("fail", "a sync cannot run"))
    return ConnectionView(
        state=state,
        label=label,
        report=report,
        checking=status.checking,
        checked_ago=relative(report.checked_at, utcnow()) if report else None,
        last_token=last.token_label if last else None,
        last_token_run=last.id if last else None,
    )


def check_route(webserver, *, admin_path: str, check_csrf, read_form, flash_redirect):
    """The "Check again" POST. The admin page's CSRF, form and flash helpers are passed in (this
    module sits below admin.py)."""
    from .common import BodyTooLarge, error_page

    key = webserver.signing_key

    async def check_again(request: Request) -> Response:
        if request.method != "POST":
            response = error_page(405, "Method not allowed", "This address only accepts POST.")
            response.headers["Allow"] = "POST"
            return response
        try:
            form = await read_form(request)
        except BodyTooLarge:
            return error_page(413, "Form too large", "That form submission is larger than this page ever sends.")
        if not check_csrf(key, request, form):
            return error_page(403, "This form has expired", "Reload the admin page and try again. Nothing was changed.")
        report = await run_in_threadpool(connection_status(webserver).check_now)
        log.info("admin page: Moodle connection check -> exit %s", report.exit_code)
        kind = {EXIT_OK: "success", EXIT_PARTIAL: "warning"}.get(report.exit_code, "error")
        response = flash_redirect(key, request, kind, f"Moodle connection checked: {report.verdict}.")
        response.headers["Location"] = admin_path + "#moodle-connection"
        return response

    return any_method_route(CHECK_PATH, check_again, name="moodle-admin-connection-check")
