"""The admin page `GET /dashboard/admin/integration`: the task-shaped front door.

One panel per target: enabled switch and frequency (one form), last and next run, "Run now",
and the recent sync runs, each linking to its Dagster run page. Server-rendered, no
JavaScript. Every POST carries a CSRF token (see security.py), answers with a redirect back
to the page and a one-shot flash message (POST-redirect-GET), or re-renders the page with
status 400 and the message beside the field when the input is invalid. A bad or missing CSRF
token gets a 403 page, an unknown target a 404 page.

Routes (each answers 405 for other methods):
- `GET  /dashboard/admin/integration`
- `POST /dashboard/admin/integration/{TARGET}/settings`  fields: `enabled` (checkbox "on"), `frequency_minutes`
- `POST /dashboard/admin/integration/{TARGET}/run`
- `POST /dashboard/admin/integration/connection/check` (the "Moodle connection" panel, connection.py)
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from schedules.config_table import (
    MAX_FREQUENCY_MINUTES,
    MIN_FREQUENCY_MINUTES,
    ConfigValidationError,
    list_configs,
    parse_frequency,
    update_config,
)

from ..core.clock import utcnow
from ..core.targets import TARGET_SPECS, LaunchOutcome, SyncStatus, SyncTarget, SyncTrigger
from ..history import SyncHistory
from ..orchestration.run_state import run_state_checker
from .common import (
    ADMIN_PATH,
    BodyTooLarge,
    any_method_route,
    error_page,
    is_https,
    log,
    method_not_allowed,
    read_body,
    render,
)
from .connection import check_route, connection_view
from .launcher import launch_targets
from .run_view import RunView, absolute, aware, duration, last_run, relative, run_view
from .security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    csrf_token_for,
    csrf_valid,
    new_csrf_nonce,
    sign,
    unsign,
)

__all__ = ["ADMIN_PATH", "RunView", "admin_routes", "duration", "run_view"]

FLASH_COOKIE = "moodle_flash"
RECENT_RUNS = 10

TITLES = {
    SyncTarget.COURSE_CATALOG: "Course catalog",
    SyncTarget.USER_DIRECTORY: "User directory",
    SyncTarget.ENROLLMENTS: "Enrollments",
}


# --- presentation helpers (rows: run_view.py) -------------------------------------------------


def every(minutes: int) -> str:
    if minutes % 1440 == 0:
        days = minutes // 1440
        return "every day" if days == 1 else f"every {days} days"
    if minutes % 60 == 0:
        hours = minutes // 60
        return "every hour" if hours == 1 else f"every {hours} hours"
    return "every minute" if minutes == 1 else f"every {minutes} minutes"


def build_panels(history: SyncHistory, instance, errors: dict | None = None, values: dict | None = None) -> list[dict]:
    errors, values = errors or {}, values or {}
    now = utcnow()
    checker = run_state_checker(instance) if instance is not None else None
    panels = []
    for config in list_configs(history.engine):
        target = config.target
        rows = history.recent(target=target, limit=RECENT_RUNS)
        runs = []
        running = False
        for row in rows:
            state = None
            if row.status == SyncStatus.RUNNING:
                running = True
                if row.dagster_run_id and checker is not None:
                    try:
                        state = checker(row.dagster_run_id)
                    except Exception:
                        state = None
            runs.append(run_view(row, now, state))
        newest = history.last_run(target)
        newest_state = None
        if newest is not None and newest.status == SyncStatus.RUNNING and newest.dagster_run_id and checker:
            try:
                newest_state = checker(newest.dagster_run_id)
            except Exception:
                newest_state = None
        last = last_run(newest, now, newest_state)
        next_at = aware(config.next_run_at)
        if not config.enabled:
            next_text, next_title = "not scheduled (disabled)", ""
        elif next_at is None or next_at <= now:
            next_text, next_title = "due now (next scheduler tick)", absolute(next_at)
        else:
            next_text, next_title = relative(next_at, now), absolute(next_at)
        spec = TARGET_SPECS[target]
        panels.append(
            {
                "target": target.value,
                "slug": target.value.lower(),
                "title": TITLES.get(target, target.value),
                "description": spec.description,
                "asset_name": spec.asset_name,
                "job_name": spec.job_name,
                "enabled": values.get(target.value, {}).get("enabled", config.enabled),
                "frequency": values.get(target.value, {}).get("frequency", config.frequency_minutes),
                "every": every(config.frequency_minutes),
                "saved_enabled": config.enabled,
                "last_run": last.text,
                "last_run_title": last.title,
                "last_status": last.status,
                "last_pill": last.pill,
                "next_run": next_text,
                "next_run_title": next_title,
                "running": running,
                "runs": runs,
                "error": errors.get(target.value),
            }
        )
    return panels


# --- CSRF and flash cookies -------------------------------------------------------------------


def _csrf_nonce(request: Request) -> tuple[str, bool]:
    """The browser's CSRF nonce, and whether it has to be (re)set in a cookie."""
    nonce = request.cookies.get(CSRF_COOKIE)
    if nonce and 16 <= len(nonce) <= 64:
        return nonce, False
    return new_csrf_nonce(), True


def set_csrf_cookie(response: Response, request: Request, nonce: str) -> None:
    response.set_cookie(
        CSRF_COOKIE, nonce, path="/", httponly=True, samesite="strict", secure=is_https(request), max_age=30 * 86400
    )


def csrf_context(key: bytes, request: Request) -> tuple[str, str, bool]:
    nonce, fresh = _csrf_nonce(request)
    return nonce, csrf_token_for(key, nonce), fresh


def same_origin(request: Request) -> bool:
    """Refuse a POST whose Origin (or Referer) names another site; absent headers are allowed."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        return origin != "null"
    parts = urlsplit(origin)
    return parts.netloc.lower() == (request.headers.get("host") or "").lower()


async def read_form(request: Request) -> dict[str, str]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await read_body(request)
    if content_type != "application/x-www-form-urlencoded":
        return {}
    parsed = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=20)
    return {k: v[-1] for k, v in parsed.items()}


def check_csrf(key: bytes, request: Request, form: dict[str, str]) -> bool:
    return same_origin(request) and csrf_valid(key, request.cookies.get(CSRF_COOKIE), form.get(CSRF_FIELD))


def flash_redirect(key: bytes, request: Request, kind: str, text: str) -> RedirectResponse:
    response = RedirectResponse(ADMIN_PATH + "#" + _anchor_from(request), status_code=303)
    response.set_cookie(
        FLASH_COOKIE,
        sign(key, "flash", {"kind": kind, "text": text}, 120),
        path=ADMIN_PATH,
        httponly=True,
        samesite="lax",
        secure=is_https(request),
        max_age=120,
    )
    return response


def _anchor_from(request: Request) -> str:
    target = request.path_params.get("target", "")
    return f"target-{target.lower()}" if target else ""


def read_flash(key: bytes, request: Request) -> dict | None:
    payload = unsign(key, "flash", request.cookies.get(FLASH_COOKIE))
    if (
        isinstance(payload, dict)
        and payload.get("kind") in ("success", "warning", "error")
        and isinstance(payload.get("text"), str)
    ):
        return payload
    return None


# --- endpoints --------------------------------------------------------------------------------


def _page(webserver, request: Request, *, status_code=200, flash=None, errors=None, values=None) -> Response:
    nonce, token, fresh = csrf_context(webserver.signing_key, request)
    current = webserver.settings
    with webserver.request_context(request) as context:
        panels = build_panels(webserver.history, context.instance, errors, values)
    connection = connection_view(webserver, relative)
    moodle_host = urlsplit(current.moodle_url).netloc if current.moodle_url else None
    response = render(
        "admin.html",
        status_code=status_code,
        panels=panels,
        connection=connection,
        flash=flash,
        csrf_field=CSRF_FIELD,
        csrf_token=token,
        admin_path=ADMIN_PATH,
        moodle_host=moodle_host,
        trigger_enabled=bool(current.sync_secret),
        access_control=bool(current.web_token),
        min_frequency=MIN_FREQUENCY_MINUTES,
        max_frequency=MAX_FREQUENCY_MINUTES,
        generated_at=absolute(utcnow()),
    )
    if fresh:
        set_csrf_cookie(response, request, nonce)
    if request.cookies.get(FLASH_COOKIE):
        response.delete_cookie(FLASH_COOKIE, path=ADMIN_PATH)
    return response


def _target_or_none(request: Request) -> SyncTarget | None:
    value = request.path_params.get("target", "")
    try:
        return SyncTarget(value)
    except ValueError:
        return None


def _forbidden() -> Response:
    return error_page(
        403,
        "This form has expired",
        "The form's security token is missing or does not match this browser (or the request came from another site). "
        "Nothing was changed. Go back, reload the admin page and try again.",
    )


async def _checked_post(key: bytes, request: Request) -> tuple[SyncTarget, dict] | Response:
    """The checks every admin form POST passes, in order: method, size, CSRF, target."""
    if request.method != "POST":
        return method_not_allowed("POST")
    target = _target_or_none(request)
    try:
        form = await read_form(request)
    except BodyTooLarge:
        return error_page(413, "Form too large", "That form submission is larger than this page ever sends.")
    if not check_csrf(key, request, form):
        return _forbidden()
    if target is None:
        return error_page(
            404, "Unknown target", f"There is no sync target called {request.path_params.get('target')!r}."
        )
    return target, form


def make_admin_endpoints(webserver):
    key = webserver.signing_key

    async def admin_page(request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return method_not_allowed("GET")
        flash = read_flash(key, request)
        return await run_in_threadpool(_page, webserver, request, flash=flash)

    async def save_settings(request: Request) -> Response:
        checked = await _checked_post(key, request)
        if isinstance(checked, Response):
            return checked
        target, form = checked
        enabled = form.get("enabled") in ("on", "true", "1")
        raw_frequency = form.get("frequency_minutes", "")
        try:
            frequency = parse_frequency(raw_frequency)
        except ConfigValidationError as exc:
            message = str(exc)
            if not raw_frequency.strip():
                message = (
                    f"frequency is required: a whole number of minutes between {MIN_FREQUENCY_MINUTES} "
                    f"and {MAX_FREQUENCY_MINUTES} (30 days)"
                )
            return await run_in_threadpool(
                _page,
                webserver,
                request,
                status_code=400,
                errors={target.value: message},
                values={target.value: {"enabled": enabled, "frequency": raw_frequency}},
            )

        def apply():
            return update_config(webserver.engine, target, enabled=enabled, frequency_minutes=frequency)

        config = await run_in_threadpool(apply)
        state = "enabled" if config.enabled else "disabled"
        log.info(
            "admin page: %s set %s %s, every %s min",
            request.client.host if request.client else "?",
            target.value,
            state,
            config.frequency_minutes,
        )
        text = f"{TITLES[target]} saved: {state}, {every(config.frequency_minutes)}."
        return flash_redirect(key, request, "success", text)

    async def run_now(request: Request) -> Response:
        checked = await _checked_post(key, request)
        if isinstance(checked, Response):
            return checked
        target, _form = checked

        (outcome,) = await run_in_threadpool(launch_targets, webserver, request, [target], trigger=SyncTrigger.MANUAL)
        log.info(
            "admin page: %s ran %s now -> %s%s",
            request.client.host if request.client else "?",
            target.value,
            outcome.outcome.value,
            f" ({outcome.reason})" if outcome.reason else "",
        )
        if outcome.outcome is LaunchOutcome.LAUNCHED:
            started = f"sync run #{outcome.sync_run_id}, Dagster run {(outcome.dagster_run_id or '')[:8]}"
            return flash_redirect(key, request, "success", f"{TITLES[target]} sync started ({started}).")
        if outcome.busy:
            text = f"{TITLES[target]} not started: {outcome.reason}. Try again when it has finished."
            return flash_redirect(key, request, "warning", text)
        return flash_redirect(key, request, "warning", f"{TITLES[target]} not started: {outcome.reason}")

    return admin_page, save_settings, run_now


def admin_routes(webserver) -> list:
    admin_page, save_settings, run_now = make_admin_endpoints(webserver)
    from starlette.routing import Route

    return [
        any_method_route(ADMIN_PATH, admin_page, name="moodle-admin"),
        Route(ADMIN_PATH + "/", lambda request: RedirectResponse(ADMIN_PATH, status_code=308)),
        any_method_route(ADMIN_PATH + "/{target}/settings", save_settings, name="moodle-admin-settings"),
        any_method_route(ADMIN_PATH + "/{target}/run", run_now, name="moodle-admin-run"),
        check_route(
            webserver,
            admin_path=ADMIN_PATH,
            check_csrf=check_csrf,
            read_form=read_form,
            flash_redirect=flash_redirect,
        ),
    ]
