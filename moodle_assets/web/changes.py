"""`GET /dashboard/admin/integration/runs/{run_id}/changes`: what one sync run changed.

Read from the change log (`integration_change_log`, written in the run's own transaction), in
the order it was written, `PAGE_SIZE` rows a page (`?page=N`), with the total and the counts by
kind. Behind the same access control as the admin page (the whole web process's, access.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ..core.clock import utcnow
from ..history import RunRow
from ..store import changelog
from ..store.db import transaction
from .common import ADMIN_PATH, any_method_route, changes_path, error_page, method_not_allowed, render

PAGE_SIZE = 500


@dataclass(frozen=True)
class ChangeRow:
    changed_at: str
    entity: str
    moodle_key: str
    kind: str
    columns: str


def _page_number(request: Request) -> int | None:
    raw = request.query_params.get("page", "1")
    return int(raw) if raw.isdigit() and int(raw) >= 1 else None


def _view(webserver, run_id: int, page: int) -> tuple[RunRow | None, int, dict[str, int], list[ChangeRow]]:
    run = webserver.history.get(run_id)
    where = changelog.ChangeFilter(run_id=run_id)
    with transaction(webserver.engine) as session:
        total = changelog.count_changes(session, where)
        by_kind = changelog.counts_by_kind(session, where)
        rows = changelog.page_of_changes(session, where, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    return (
        run,
        total,
        by_kind,
        [
            ChangeRow(
                changed_at=r.changed_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
                entity=r.entity,
                moodle_key=r.moodle_key,
                kind=r.kind,
                columns=", ".join(changelog.columns_of(r)) or "-",
            )
            for r in rows
        ],
    )


def make_changes_endpoint(webserver):
    async def run_changes(request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return method_not_allowed("GET")
        raw_id = request.path_params.get("run_id", "")
        page = _page_number(request)
        if not raw_id.isdigit() or page is None:
            return error_page(404, "No such page", "Sync run ids and page numbers are whole numbers.")
        run_id = int(raw_id)
        run, total, by_kind, rows = await run_in_threadpool(_view, webserver, run_id, page)
        if run is None and total == 0:
            return error_page(404, "Unknown sync run", f"There is no sync run #{run_id}.")
        pages = max(1, -(-total // PAGE_SIZE))
        return render(
            "changes.html",
            run_id=run_id,
            run=run,
            total=total,
            by_kind=by_kind,
            rows=rows,
            page=page,
            pages=pages,
            page_size=PAGE_SIZE,
            first=(page - 1) * PAGE_SIZE + 1,
            path=changes_path(run_id),
            admin_path=ADMIN_PATH,
            generated_at=utcnow().strftime("%Y-%m-%d %H:%M:%S UTC"),
        )

    return run_changes


def changes_routes(webserver) -> list:
    return [
        any_method_route(
            ADMIN_PATH + "/runs/{run_id}/changes", make_changes_endpoint(webserver), name="moodle-admin-run-changes"
        )
    ]
