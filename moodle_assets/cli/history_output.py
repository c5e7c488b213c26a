"""`moodle-integration runs`: the recent sync history as a table."""

from __future__ import annotations

from ..core.targets import SyncTarget
from ..history import SyncHistory


def _fmt_time(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value else "-"


def print_runs(history: SyncHistory, *, target: SyncTarget | None = None, limit: int = 20) -> int:
    rows = history.recent(target=target, limit=limit)
    print(
        f"{'ID':>5} {'TARGET':<16} {'STATUS':<8} {'TRIGGER':<9} {'STARTED':<21} {'SECONDS':>8} "
        f"{'FETCHED':>8} {'INS':>6} {'UPD':>6} {'DEACT':>6} {'REJ':>5}  NOTE"
    )
    for r in rows:
        seconds = f"{r.duration_seconds:.1f}" if r.duration_seconds is not None else "-"
        note = r.error or r.skip_reason or (r.dagster_run_id or "")
        if r.warning and not r.error:
            first, *more = r.warning.splitlines()
            note = f"warning: {first}" + (f" (+{len(more)} more)" if more else "")
        if r.status == "RUNNING" and r.worker_pid is not None:
            # Who to look at when it seems stuck.
            note += f" (pid {r.worker_pid} on host {r.worker_host}, last heartbeat {_fmt_time(r.heartbeat_at)})"
        print(
            f"{r.id:>5} {r.target:<16} {r.status:<8} {r.trigger:<9} {_fmt_time(r.started_at):<21} {seconds:>8} "
            f"{_n(r.rows_fetched):>8} {_n(r.rows_inserted):>6} {_n(r.rows_updated):>6} "
            f"{_n(r.rows_deactivated):>6} {_n(r.rows_rejected):>5}  {note}"
        )
    if not rows:
        print("(no sync runs yet)")
    return 0


def _n(value) -> str:
    return "-" if value is None else str(value)
