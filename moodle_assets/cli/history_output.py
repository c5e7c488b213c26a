"""`moodle-integration runs`: the recent sync history as a table.

Counts are shown for SUCCESS rows only ("–" otherwise: a failed sync writes nothing, so its row
counts are unknown, not zero), in the same order as the sum they make:
fetched = inserted + updated + unchanged + rejected + skipped. SECONDS is the sync's own time
(from its start to its end); QUEUED the wait before it started (claim to start).
"""

from __future__ import annotations

from ..core.cause import short_cause
from ..core.targets import SyncTarget
from ..history import RunRow, SyncHistory

DASH = "–"


def _fmt_time(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value else "-"


def _seconds(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else DASH


def note(r: RunRow) -> str:
    """The row's one-line note: its short cause, a warning, or its Dagster run."""
    text = short_cause(r.error or r.skip_reason) or (r.dagster_run_id or "")
    if r.warning and not r.error:
        first, *more = r.warning.splitlines()
        text = f"warning: {first}" + (f" (+{len(more)} more)" if more else "")
    if r.status == "RUNNING" and r.worker_pid is not None:
        # Who to look at when it seems stuck.
        text += f" (pid {r.worker_pid} on host {r.worker_host}, last heartbeat {_fmt_time(r.heartbeat_at)})"
    return text


def print_runs(history: SyncHistory, *, target: SyncTarget | None = None, limit: int = 20) -> int:
    rows = history.recent(target=target, limit=limit)
    print(
        f"{'ID':>5} {'TARGET':<16} {'STATUS':<8} {'TRIGGER':<9} {'STARTED':<21} {'SECONDS':>8} {'QUEUED':>7} "
        f"{'FETCHED':>8} {'INS':>6} {'UPD':>6} {'UNCH':>6} {'REJ':>5} {'SKIP':>5} {'DEACT':>6}  NOTE"
    )
    for r in rows:
        known = r.has_counts
        cells = [
            _n(v, known)
            for v in (
                r.rows_fetched,
                r.rows_inserted,
                r.rows_updated,
                r.rows_unchanged,
                r.rows_rejected,
                r.rows_skipped,
                r.rows_deactivated,
            )
        ]
        print(
            f"{r.id:>5} {r.target:<16} {r.status:<8} {r.trigger:<9} {_fmt_time(r.started_at):<21} "
            f"{_seconds(r.duration_seconds):>8} {_seconds(r.queued_seconds):>7} "
            f"{cells[0]:>8} {cells[1]:>6} {cells[2]:>6} {cells[3]:>6} {cells[4]:>5} {cells[5]:>5} {cells[6]:>6}  "
            f"{note(r)}"
        )
    if not rows:
        print("(no sync runs yet)")
    return 0


def _n(value: int | None, known: bool) -> str:
    return DASH if value is None or not known else str(value)
