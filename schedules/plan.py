"""What the schedule sensor does on one tick, decided by a pure function.

`plan_tick(configs, busy, now)` looks at every target's config row and at which targets are
busy (have a RUNNING history row) and returns one `Decision` per target:

- `DISABLED`: the schedule never runs it.
- `NOT_DUE`: enabled, next run in the future.
- `SKIP`: due, but its previous sync is still running. The slot is recorded once as a
  SKIPPED history row and moved to the next slot (`Decision.next_slot`), so a sync that takes
  longer than its frequency yields one skip row per missed slot, not one per tick.
- `WAIT`: due, but an upstream target (ENROLLMENTS needs COURSE_CATALOG and USER_DIRECTORY)
  is due now or still syncing. Nothing is recorded and the slot is kept: it launches on the
  first tick after the upstream sync ends, so enrollments are matched against fresh courses
  and users (dependency order without coupling the targets into one run).
- `LAUNCH`: due and free: the sensor requests a run of the target's job.

No I/O here: the sensor reads the rows, calls this, then acts.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from moodle_assets.core.targets import TARGET_SPECS, SyncTarget

from .config_table import TargetConfig
from .due import is_due, next_slot

# How often the schedule is looked at (seconds; MOODLE_SCHEDULE_SENSOR_INTERVAL_SECONDS).
DEFAULT_TICK_SECONDS = 30


class Action(enum.StrEnum):
    DISABLED = "DISABLED"
    NOT_DUE = "NOT_DUE"
    SKIP = "SKIP"
    WAIT = "WAIT"
    LAUNCH = "LAUNCH"


@dataclass(frozen=True)
class Decision:
    target: SyncTarget
    action: Action
    slot: datetime | None  # the config row's next_run_at when decided (None: never scheduled)
    reason: str
    next_slot: datetime | None = None  # SKIP only: where next_run_at moves


def fmt_time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value else "-"


def slot_label(config: TargetConfig) -> str:
    """A stable name for the slot a due target is in; the same on every tick until it moves."""
    if config.next_run_at is not None:
        return config.next_run_at.isoformat()
    return "unscheduled-after-" + (config.last_run_at.isoformat() if config.last_run_at else "never")


def run_key(config: TargetConfig) -> str:
    """Dagster run key of the scheduled run for the target's current slot.

    The sensor daemon launches at most one run per run key, so re-evaluating the same slot
    (a tick that runs again, or the next tick while the run still waits in the queue) never
    starts a second run.
    """
    return f"{config.target.value}:{slot_label(config)}"


def plan_tick(configs: Sequence[TargetConfig], busy: Mapping[SyncTarget, str], now: datetime) -> list[Decision]:
    """One decision per config row; `busy` maps a target with a RUNNING row to a description of it."""
    due = {c.target for c in configs if is_due(enabled=c.enabled, next_run_at=c.next_run_at, now=now)}
    decisions: list[Decision] = []
    for config in configs:
        target = config.target
        if not config.enabled:
            decisions.append(Decision(target, Action.DISABLED, config.next_run_at, f"{target.value}: disabled"))
            continue
        if target not in due:
            decisions.append(
                Decision(
                    target,
                    Action.NOT_DUE,
                    config.next_run_at,
                    f"{target.value}: next run at {fmt_time(config.next_run_at)}",
                )
            )
            continue
        if target in busy:
            following = next_slot(
                scheduled_at=config.next_run_at, started_at=now, frequency_minutes=config.frequency_minutes
            )
            reason = (
                f"scheduled run of {fmt_time(config.next_run_at or now)} skipped: {target.value} is still syncing "
                f"({busy[target]}); next run at {fmt_time(following)}"
            )
            decisions.append(Decision(target, Action.SKIP, config.next_run_at, reason, following))
            continue
        blockers = [u for u in TARGET_SPECS[target].upstream if u in due or u in busy]
        if blockers:
            names = " and ".join(u.value for u in blockers)
            decisions.append(
                Decision(
                    target, Action.WAIT, config.next_run_at, f"{target.value}: due, waiting for {names} to sync first"
                )
            )
            continue
        decisions.append(
            Decision(
                target,
                Action.LAUNCH,
                config.next_run_at,
                f"{target.value}: due since {fmt_time(config.next_run_at or now)}",
            )
        )
    return decisions
