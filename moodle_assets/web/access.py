"""Optional access control for the whole web process: `MOODLE_INTEGRATION_WEB_TOKEN`.

Open-source Dagster has no login. When this variable is set (read at start-up with the other
settings), every HTTP
request and websocket to the web process — Dagster UI, its static files, GraphQL (HTTP and
websocket), the admin page — needs either

- `Authorization: Bearer <token>` (scripts, `DagsterGraphQLClient(headers=...)`), or
- the session cookie set by the login form at `/login` (browsers): HMAC-signed with a key
  derived from the token, HttpOnly, SameSite=Lax, 12 hours; changing the token signs
  everyone out. `POST /logout` clears it.

Unauthenticated browser page loads (GET accepting HTML) are redirected to `/login?next=...`;
anything else gets 401 JSON with `WWW-Authenticate: Bearer`; a websocket is refused before
the handshake completes (HTTP 403). The HTTP trigger keeps its own secret
(`MOODLE_SYNC_CRON_SECRET`) and is not behind the token, so cron needs only one secret.
Unset (the default), the process is open, which is why `serve` binds to 127.0.0.1 by default.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from urllib.parse import parse_qs, quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from .common import ADMIN_PATH, BodyTooLarge, any_method_route, error_page, is_https, log, read_body, render
from .security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    csrf_token_for,
    csrf_valid,
    new_csrf_nonce,
    secrets_equal,
    sign,
    unsign,
)
from .trigger import TRIGGER_PATH

WEB_TOKEN_ENV = "MOODLE_INTEGRATION_WEB_TOKEN"
SESSION_COOKIE = "moodle_session"
SESSION_MAX_AGE_S = 12 * 3600
LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
PUBLIC_PATHS = frozenset({TRIGGER_PATH, LOGIN_PATH})
FAILED_LOGIN_DELAY_S = 0.5


def _session_key(token: str) -> bytes:
    return hashlib.sha256(b"moodle-web-session:" + token.encode()).digest()


def session_cookie_value(token: str) -> str:
    return sign(_session_key(token), "session", {"v": 1}, SESSION_MAX_AGE_S)


def _cookie(headers: list[tuple[bytes, bytes]], name: str) -> str | None:
    from http.cookies import SimpleCookie

    for key, value in headers:
        if key == b"cookie":
            jar = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:
                continue
            if name in jar:
                return jar[name].value
    return None


def authorized(token: str, headers: list[tuple[bytes, bytes]]) -> bool:
    for key, value in headers:
        if key == b"authorization":
            scheme, _, given = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and secrets_equal(given.strip(), token):
                return True
    return unsign(_session_key(token), "session", _cookie(headers, SESSION_COOKIE)) is not None


def safe_next(value: str | None) -> str:
    """Only a local path: never `//host` or `https://host` (no open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return ADMIN_PATH
    return value


class AccessControlMiddleware:
    """ASGI middleware in front of everything (outermost): token or session, else refuse."""

    def __init__(self, app, token: str | None):
        self.app = app
        self.token = token

    async def __call__(self, scope, receive, send):
        token = self.token if scope["type"] in ("http", "websocket") else None
        if token is None:
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if (scope["type"] == "http" and path in PUBLIC_PATHS) or authorized(token, scope.get("headers", [])):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        method = scope.get("method", "GET")
        accept = dict(scope.get("headers", [])).get(b"accept", b"").decode("latin-1")
        if method in ("GET", "HEAD") and "text/html" in accept:
            query = scope.get("query_string", b"").decode("latin-1")
            target = path + (f"?{query}" if query else "")
            response: Response = RedirectResponse(f"{LOGIN_PATH}?next={quote(target, safe='')}", status_code=303)
        else:
            response = Response(
                json.dumps(
                    {
                        "error": f"authentication required: send 'Authorization: Bearer <token>' "
                        f"({WEB_TOKEN_ENV}) or sign in at {LOGIN_PATH}"
                    }
                ),
                status_code=401,
                media_type="application/json",
                headers={"WWW-Authenticate": 'Bearer realm="moodle-integration"', "Cache-Control": "no-store"},
            )
        await response(scope, receive, send)


def _login_page(
    key: bytes, request: Request, *, next_path: str, error: str | None = None, status_code: int = 200
) -> Response:
    cookie = request.cookies.get(CSRF_COOKIE)
    fresh = not cookie or not (16 <= len(cookie) <= 64)
    nonce = new_csrf_nonce() if fresh or cookie is None else cookie
    response = render(
        "login.html",
        status_code=status_code,
        error=error,
        next=next_path,
        csrf_field=CSRF_FIELD,
        csrf_token=csrf_token_for(key, nonce),
        admin_path=None,
    )
    if fresh:
        response.set_cookie(
            CSRF_COOKIE, nonce, path="/", httponly=True, samesite="strict", secure=is_https(request), max_age=30 * 86400
        )
    return response


def make_access_endpoints(webserver):
    token, key = webserver.settings.web_token, webserver.signing_key

    async def login(request: Request) -> Response:
        if token is None:
            return RedirectResponse(ADMIN_PATH, status_code=303)
        if request.method in ("GET", "HEAD"):
            return _login_page(key, request, next_path=safe_next(request.query_params.get("next")))
        if request.method != "POST":
            response = error_page(405, "Method not allowed", "This address only accepts GET and POST.", back=None)
            response.headers["Allow"] = "GET, POST"
            return response
        try:
            raw = await read_body(request)
        except BodyTooLarge:
            return error_page(
                413, "Form too large", "That form submission is larger than the sign-in form ever sends.", back=None
            )
        pairs = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=10)
        form = {k: v[-1] for k, v in pairs.items()}
        next_path = safe_next(form.get("next"))
        if not csrf_valid(key, request.cookies.get(CSRF_COOKIE), form.get(CSRF_FIELD)):
            return _login_page(
                key,
                request,
                next_path=next_path,
                status_code=403,
                error="The sign-in form expired. Please enter the token again.",
            )
        if not secrets_equal(form.get("token", "").strip(), token):
            await asyncio.sleep(FAILED_LOGIN_DELAY_S)  # slows guessing down; the token should be long anyway
            log.warning("web login: wrong token from %s", request.client.host if request.client else "?")
            return _login_page(key, request, next_path=next_path, status_code=401, error="That token is not right.")
        log.info("web login: signed in from %s", request.client.host if request.client else "?")
        redirect = RedirectResponse(next_path, status_code=303)
        redirect.set_cookie(
            SESSION_COOKIE,
            session_cookie_value(token),
            path="/",
            httponly=True,
            samesite="lax",
            secure=is_https(request),
            max_age=SESSION_MAX_AGE_S,
        )
        return redirect

    async def logout(request: Request) -> Response:
        if request.method != "POST":
            response = error_page(
                405, "Method not allowed", "Sign out with the button on the admin page (POST).", back=None
            )
            response.headers["Allow"] = "POST"
            return response
        redirect = RedirectResponse(LOGIN_PATH if token else ADMIN_PATH, status_code=303)
        redirect.delete_cookie(SESSION_COOKIE, path="/")
        return redirect

    return login, logout


def access_routes(webserver) -> list:
    login, logout = make_access_endpoints(webserver)
    return [
        any_method_route(LOGIN_PATH, login, name="moodle-login"),
        any_method_route(LOGOUT_PATH, logout, name="moodle-logout"),
    ]
