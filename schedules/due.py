"""Pure scheduling maths: when is a target due, and when does it run next.

Rules:
- A disabled target is never due and has no next run.
- An enabled target that never ran is due now.
- Next run = last run + frequency, kept on the rhythm of the previous slot (no drift from
  slow runs or late ticks), but never in the past: after downtime a target runs once, then
  returns to its normal rhythm (no catch-up storm).
"""

from __future__ import annotations

from datetime import datetime, timedelta


def next_run_after_change(
    *, enabled: bool, frequency_minutes: int, last_run_at: datetime | None, now: datetime
) -> datetime | None:
    """Next run after an operator edits enabled/frequency."""
    if not enabled:
        return None
    if last_run_at is None:
        return now
    return max(now, last_run_at + timedelta(minutes=frequency_minutes))


def next_slot(*, scheduled_at: datetime | None, started_at: datetime, frequency_minutes: int) -> datetime:
    """The slot after a run that was scheduled for `scheduled_at` and started at `started_at`.

    Keeps the phase of `scheduled_at` (so a run that started 20 s late does not push every later
    run 20 s later) and skips the slots missed during downtime, returning the first one after
    `started_at`.
    """
    period = timedelta(minutes=frequency_minutes)
    anchor = scheduled_at or started_at
    if anchor > started_at:
        anchor = started_at
    missed = (started_at - anchor) // period
    candidate = anchor + (missed + 1) * period
    return candidate


def is_due(*, enabled: bool, next_run_at: datetime | None, now: datetime) -> bool:
    if not enabled:
        return False
    return next_run_at is None or next_run_at <= now
