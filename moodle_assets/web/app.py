"""The web process: the Dagster UI with our routes on the same Starlette app and port.

This is the project's one seam into Dagster internals, and why: open-source Dagster has no
public API to serve its UI with extra routes. We subclass `DagsterWebserver` (dagster-webserver
1.13.27, pinned) and prepend our routes so they match before the UI's catch-all; the workspace
the webserver serves needs `WorkspaceProcessContext` / `WorkspaceFileTarget` from
`dagster._core.workspace`, exactly what `dagster-webserver`'s own CLI builds. Runs are launched
through the public GraphQL `launchRun` mutation (see `launcher.py`). `tests/web` covers each of
these names (a Dagster upgrade that moves them fails there first).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from dagster import DagsterInstance
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster_webserver.version import __version__ as webserver_version
from dagster_webserver.webserver import DagsterWebserver
from sqlalchemy import Engine
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from ..history import SyncHistory
from ..settings import Settings
from ..store.db import engine_for
from .security import signing_key

RouteFactory = Callable[["AppWebserver"], list[BaseRoute]]


class AppWebserver(DagsterWebserver):
    """Dagster's webserver plus the integration's own endpoints, bound to one `Settings`."""

    def __init__(self, process_context: WorkspaceProcessContext, settings: Settings, routes: Sequence[RouteFactory]):
        self.settings = settings
        self.engine: Engine = engine_for(settings.database_url)
        self.history = SyncHistory(self.engine, heartbeat_timeout=settings.heartbeat_timeout_seconds)
        self.signing_key = signing_key(settings.data_dir, settings.web_signing_key)
        self._route_factories = routes
        super().__init__(process_context)

    def build_routes(self):
        own: list[BaseRoute] = []
        for factory in self._route_factories:
            own.extend(factory(self))
        return own + list(super().build_routes())

    def build_middleware(self):
        """Access control (MOODLE_INTEGRATION_WEB_TOKEN, see access.py) in front of everything."""
        from .access import AccessControlMiddleware

        return [Middleware(AccessControlMiddleware, token=self.settings.web_token), *list(super().build_middleware())]


@contextmanager
def workspace_context(instance: DagsterInstance, workspace_file: Path) -> Iterator[WorkspaceProcessContext]:
    """The process context must stay open while the app serves (it owns the code server)."""
    with WorkspaceProcessContext(
        instance,
        WorkspaceFileTarget(paths=[str(workspace_file)]),
        version=webserver_version,
    ) as context:
        yield context


def create_app(context: WorkspaceProcessContext, settings: Settings, **kwargs):
    from .routes import ROUTE_FACTORIES

    handlers = {**database_unavailable_handlers(), **kwargs.pop("exception_handlers", {})}
    return AppWebserver(context, settings, ROUTE_FACTORIES).create_asgi_app(exception_handlers=handlers, **kwargs)


DATABASE_DOWN_RETRY_AFTER_S = 30


def database_unavailable_handlers() -> dict:
    """The app database unreachable (server down, network, SQLite locked) is a 503 that says
    so, with Retry-After, not a bare 500: JSON under /api/, the error page elsewhere."""
    from sqlalchemy.exc import InterfaceError, OperationalError
    from starlette.responses import JSONResponse

    from ..core.redaction import error_text
    from .common import error_page, log

    async def unavailable(request, exc):
        log.error("app database unavailable (%s %s): %s", request.method, request.url.path, error_text(exc)[:500])
        headers = {"Retry-After": str(DATABASE_DOWN_RETRY_AFTER_S), "Cache-Control": "no-store"}
        if request.url.path.startswith("/api/"):
            return JSONResponse(
                {
                    "error": "the app database is unreachable right now; nothing was started or changed. "
                    "Try again later."
                },
                status_code=503,
                headers=headers,
            )
        response = error_page(
            503,
            "Database unavailable",
            "The integration's database cannot be reached right now, so nothing was changed. "
            "Try again in a moment; the server log has the details.",
        )
        response.headers.update(headers)
        return response

    return {OperationalError: unavailable, InterfaceError: unavailable}
