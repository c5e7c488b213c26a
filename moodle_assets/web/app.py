"""The web process: the Dagster UI with our routes on the same Starlette app and port.

We subclass Dagster's own webserver (internal API of dagster-webserver 1.13.27, pinned; a
smoke test covers it) and prepend our routes so they match before the UI's catch-all.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from dagster import DagsterInstance
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster_webserver.version import __version__ as webserver_version
from dagster_webserver.webserver import DagsterWebserver
from starlette.routing import BaseRoute

RouteFactory = Callable[["AppWebserver"], list[BaseRoute]]

# Later modules (admin page, trigger endpoint) register their routes here.
_ROUTE_FACTORIES: list[RouteFactory] = []


def register_routes(factory: RouteFactory) -> RouteFactory:
    _ROUTE_FACTORIES.append(factory)
    return factory


class AppWebserver(DagsterWebserver):
    """Dagster's webserver plus the integration's own endpoints."""

    def build_routes(self):
        own: list[BaseRoute] = []
        for factory in _ROUTE_FACTORIES:
            own.extend(factory(self))
        return own + list(super().build_routes())

    def build_middleware(self):
        """Access control (MOODLE_INTEGRATION_WEB_TOKEN, see access.py) in front of everything."""
        from starlette.middleware import Middleware

        from .access import AccessControlMiddleware

        return [Middleware(AccessControlMiddleware)] + list(super().build_middleware())


@contextmanager
def workspace_context(instance: DagsterInstance, workspace_file: Path) -> Iterator[WorkspaceProcessContext]:
    """The process context must stay open while the app serves (it owns the code server)."""
    with WorkspaceProcessContext(
        instance,
        WorkspaceFileTarget(paths=[str(workspace_file)]),
        version=webserver_version,
    ) as context:
        yield context


def create_app(context: WorkspaceProcessContext, **kwargs):
    _load_route_modules()
    handlers = {**database_unavailable_handlers(), **kwargs.pop("exception_handlers", {})}
    return AppWebserver(context).create_asgi_app(exception_handlers=handlers, **kwargs)


DATABASE_DOWN_RETRY_AFTER_S = 30


def database_unavailable_handlers() -> dict:
    """The app database unreachable (server down, network, SQLite locked) is a 503 that says
    so, with Retry-After, not a bare 500: JSON under /api/, the error page elsewhere."""
    from sqlalchemy.exc import InterfaceError, OperationalError
    from starlette.responses import JSONResponse

    from ..redaction import error_text
    from .common import error_page, log

    async def unavailable(request, exc):
        log.error("app database unavailable (%s %s): %s", request.method, request.url.path, error_text(exc)[:500])
        headers = {"Retry-After": str(DATABASE_DOWN_RETRY_AFTER_S), "Cache-Control": "no-store"}
        if request.url.path.startswith("/api/"):
            return JSONResponse(
                {"error": "the app database is unreachable right now; nothing was started or changed. Try again later."},
                status_code=503, headers=headers,
            )
        response = error_page(503, "Database unavailable",
                              "The integration's database cannot be reached right now, so nothing was changed. "
                              "Try again in a moment; the server log has the details.")
        response.headers.update(headers)
        return response

    return {OperationalError: unavailable, InterfaceError: unavailable}


def _load_route_modules() -> None:
    """Import the modules that register routes (kept lazy so importing this module is cheap)."""
    import importlib

    for name in ("moodle_assets.web.routes",):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
