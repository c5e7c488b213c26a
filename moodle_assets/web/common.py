"""Helpers shared by the web routes: bodies, templates, security headers, any-method routes."""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

log = logging.getLogger("moodle_assets.web")

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
ADMIN_PATH = "/dashboard/admin/integration"


def changes_path(run_id: int) -> str:
    """The admin page's list of what one sync run changed (changes.py)."""
    return f"{ADMIN_PATH}/runs/{run_id}/changes"


MAX_BODY_BYTES = 16 * 1024  # trigger bodies and admin forms are tiny; anything bigger is refused (413)

# Our own pages: no script at all, inline styles only, never framed.
PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": PAGE_CSP,
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refusing (BodyTooLarge) more than `limit` bytes without reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise BodyTooLarge()
        except ValueError:
            pass
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


def is_https(request: Request) -> bool:
    return request.url.scheme == "https"


@lru_cache(maxsize=1)
def templates():
    # Jinja2 is a dependency of dagster itself (pinned); autoescaping guards every value.
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


def render(name: str, status_code: int = 200, headers: dict[str, str] | None = None, **values) -> HTMLResponse:
    html = templates().get_template(name).render(**values)
    return HTMLResponse(html, status_code=status_code, headers={**SECURITY_HEADERS, **(headers or {})})


def error_page(status_code: int, title: str, message: str, *, back: str | None = ADMIN_PATH) -> HTMLResponse:
    return render("error.html", status_code=status_code, title=title, message=message, back=back, status=status_code)


class _AnyMethod:
    """An ASGI endpoint object: Starlette routes it for every HTTP method.

    A plain function endpoint with `methods=None` means GET only in Starlette, and a method the
    route does not list falls through to the Dagster UI's catch-all page (200 HTML). Our
    endpoints check the method themselves and answer 405 with `Allow`.
    """

    def __init__(self, endpoint):
        from starlette.routing import request_response

        self.app = request_response(endpoint)

    async def __call__(self, scope, receive, send):
        await self.app(scope, receive, send)


def any_method_route(path: str, endpoint, *, name: str | None = None):
    from starlette.routing import Route

    return Route(path, _AnyMethod(endpoint), name=name)


def method_not_allowed(allowed: str) -> Response:
    response = error_page(405, "Method not allowed", f"This address only accepts {allowed}.")
    response.headers["Allow"] = allowed
    return response
