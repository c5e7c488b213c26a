"""How the admin page shows sync history rows: one row of the recent-runs table, and a
panel's "Last run" line. Pure functions of a `RunRow` and the time now.

- Time and status of "Last run" come from the same row (the newest sync that is not a
  skipped slot); a running one reads "running since …".
- Counts only for SUCCESS rows, as the sum they make (fetched = inserted + updated + unchanged
  + rejected + skipped); other rows show "–" (a failed sync writes nothing: unknown, not 0).
- Duration is the sync's own time; the wait before it started is shown apart ("queued …").
- Details: a short cause (one line), the full text folded below it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from ..core.cause import short_cause
from ..core.targets import SyncStatus
from ..history import RunRow, RunState
from .common import changes_path

DASH = "–"


def aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def absolute(value: datetime | None) -> str:
    value = aware(value)
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def relative(value: datetime | None, now: datetime) -> str:
    value = aware(value)
    if value is None:
        return "never"
    reference = aware(now) or now
    seconds = (value - reference).total_seconds()
    future, seconds = seconds > 0, abs(seconds)
    if seconds < 45:
        text = "a few seconds"
    elif seconds < 90 * 60:
        minutes = round(seconds / 60)
        text = f"{minutes} min"
    elif seconds < 36 * 3600:
        hours = round(seconds / 3600)
        text = f"{hours} h"
    else:
        days = round(seconds / 86400)
        text = f"{days} day{'s' if days != 1 else ''}"
    return f"in {text}" if future else f"{text} ago"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 90:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 90:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def is_not_run(row: RunRow) -> bool:
    """Closed before its sync started because of another target (upstream failed, or never synced)."""
    text = row.error or ""
    return row.status == SyncStatus.FAILED and row.worker_started_at is None and text.startswith("not run")


def status_label(row: RunRow, dagster_state: str | None = None) -> str:
    if row.status == SyncStatus.RUNNING:
        return "queued" if dagster_state == RunState.QUEUED else "running"
    if is_not_run(row):
        return "not run"
    return row.status.lower()


@dataclass
class RunView:
    id: int
    status: str
    status_label: str
    trigger: str
    started: str
    started_title: str
    duration: str
    queued: str
    counts: list[tuple[str, int]]  # (name, n) in the order of the sum, fetched first; [] when unknown
    counts_text: str  # the sum as one line ("fetched 30 = inserted 5 + …"), or "–"
    deactivated: int | None
    message: str | None  # the short cause (one line)
    message_full: str | None  # the full text when it says more than the short cause
    message_kind: str
    dagster_run_id: str | None
    dagster_short: str | None
    changes_url: str | None


def _counts(row: RunRow) -> list[tuple[str, int]]:
    if not row.has_counts:
        return []
    return [
        ("fetched", row.rows_fetched or 0),
        ("inserted", row.rows_inserted or 0),
        ("updated", row.rows_updated or 0),
        ("unchanged", row.rows_unchanged or 0),
        ("rejected", row.rows_rejected or 0),
        ("skipped", row.rows_skipped or 0),
    ]


def _message(row: RunRow, now: datetime) -> tuple[str | None, str | None]:
    if row.status == SyncStatus.RUNNING and row.worker_pid is not None:
        # Who is working on it, for whoever wonders whether it is stuck.
        beat = relative(row.heartbeat_at, now) if row.heartbeat_at else "never"
        return f"pid {row.worker_pid} on host {row.worker_host}; last heartbeat {beat}", None
    full = row.error or row.skip_reason or (f"warning: {row.warning}" if row.warning else None)
    short = short_cause(full)
    return short, (full if full and full.strip() != short else None)


def run_view(row: RunRow, now: datetime, dagster_status: str | None) -> RunView:
    short, full = _message(row, now)
    success = row.status == SyncStatus.SUCCESS
    counts = _counts(row)
    return RunView(
        id=row.id,
        status=row.status,
        status_label=status_label(row, dagster_status),
        trigger=row.trigger,
        started=relative(row.started_at, now),
        started_title=absolute(row.started_at),
        duration=duration(row.duration_seconds),
        queued=duration(row.queued_seconds) if row.queued_seconds else "",
        counts=counts,
        counts_text=row.breakdown or ("…" if row.status == SyncStatus.RUNNING else DASH),
        deactivated=row.rows_deactivated if counts else None,
        message=short,
        message_full=full,
        message_kind="error" if row.error else "note",
        dagster_run_id=row.dagster_run_id,
        dagster_short=row.dagster_run_id[:8] if row.dagster_run_id else None,
        changes_url=changes_path(row.id) if success and row.finished_at is not None else None,
    )


@dataclass
class LastRun:
    text: str  # "5 min ago", "running since 2 min ago", "never"
    title: str  # the absolute time, "" when never
    status: str | None  # the pill: "success", "failed", "not run", "running", "queued"; None when never
    pill: str | None  # css status class


def last_run(row: RunRow | None, now: datetime, dagster_state: str | None = None) -> LastRun:
    """The panel's "Last run": time and status of the same row."""
    if row is None:
        return LastRun("never", "", None, None)
    label = status_label(row, dagster_state)
    if row.status == SyncStatus.RUNNING:
        since = row.sync_started_at or row.started_at
        return LastRun(f"{label} since {relative(since, now)}", absolute(since), label, label)
    return LastRun(relative(row.started_at, now), absolute(row.started_at), label, label.replace(" ", "-"))
