"""Read and write the per-target config rows (`integration_sync_config`)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select

from moodle_assets.store.db import transaction
from moodle_assets.store.sync_runs import add_skip_row
from moodle_assets.store.models import IntegrationSyncConfig
from moodle_assets.store.types import utcnow
from moodle_assets.targets import SyncTarget

# Bounds for frequency_minutes: at least once every 30 days, at most every minute.
MIN_FREQUENCY_MINUTES = 1
MAX_FREQUENCY_MINUTES = 60 * 24 * 30


class ConfigValidationError(ValueError):
    """A config change was refused; the message says why and is safe to show to a user."""


@dataclass(frozen=True)
class TargetConfig:
    target: SyncTarget
    enabled: bool
    frequency_minutes: int
    last_run_at: datetime | None
    next_run_at: datetime | None
    updated_at: datetime | None


def _to_config(row: IntegrationSyncConfig) -> TargetConfig:
    return TargetConfig(
        target=SyncTarget(row.target),
        enabled=row.enabled,
        frequency_minutes=row.frequency_minutes,
        last_run_at=row.last_run_at,
        next_run_at=row.next_run_at,
        updated_at=row.updated_at,
    )


def parse_frequency(value: object) -> int:
    """A whole number of minutes in range, from an int or a form/CLI string."""
    if isinstance(value, bool):
        raise ConfigValidationError("frequency must be a whole number of minutes")
    if isinstance(value, str):
        text = value.strip()
        # ASCII digits only: str.isdigit() also accepts "²" and "١٢", which int() refuses
        if not (text.isascii() and text.isdigit()):
            raise ConfigValidationError(f"frequency must be a whole number of minutes, got {value[:40]!r}")
        if len(text.lstrip("0")) > len(str(MAX_FREQUENCY_MINUTES)):  # and int() refuses > 4,300 digits
            raise ConfigValidationError(
                f"frequency must be between {MIN_FREQUENCY_MINUTES} and {MAX_FREQUENCY_MINUTES} minutes (30 days), got {text[:12]}…"
            )
        value = int(text)
    if not isinstance(value, int):
        raise ConfigValidationError(f"frequency must be a whole number of minutes, got {value!r}")
    if not MIN_FREQUENCY_MINUTES <= value <= MAX_FREQUENCY_MINUTES:
        raise ConfigValidationError(
            f"frequency must be between {MIN_FREQUENCY_MINUTES} and {MAX_FREQUENCY_MINUTES} minutes (30 days), got {value}"
        )
    return value


def list_configs(engine: Engine) -> list[TargetConfig]:
    with transaction(engine) as session:
        rows = session.scalars(select(IntegrationSyncConfig)).all()
        by_target = {row.target: _to_config(row) for row in rows}
    return [by_target[t.value] for t in SyncTarget if t.value in by_target]


def get_config(engine: Engine, target: SyncTarget) -> TargetConfig:
    with transaction(engine) as session:
        row = session.get(IntegrationSyncConfig, target.value)
        if row is None:
            raise LookupError(f"no config row for {target.value}; run `moodle-integration db upgrade`")
        return _to_config(row)


def update_config(
    engine: Engine,
    target: SyncTarget,
    *,
    enabled: bool | None = None,
    frequency_minutes: int | None = None,
    now: datetime | None = None,
) -> TargetConfig:
    """Change a target's schedule; the next sensor tick uses it (no deploy)."""
    from .due import next_run_after_change

    now = now or utcnow()
    if frequency_minutes is not None:
        frequency_minutes = parse_frequency(frequency_minutes)
    with transaction(engine) as session:
        row = session.get(IntegrationSyncConfig, target.value, with_for_update=True)
        if row is None:
            raise LookupError(f"no config row for {target.value}; run `moodle-integration db upgrade`")
        changed = False
        if enabled is not None and enabled != row.enabled:
            row.enabled = enabled
            changed = True
        if frequency_minutes is not None and frequency_minutes != row.frequency_minutes:
            row.frequency_minutes = frequency_minutes
            changed = True
        if changed:
            row.next_run_at = next_run_after_change(
                enabled=row.enabled, frequency_minutes=row.frequency_minutes, last_run_at=row.last_run_at, now=now
            )
            row.updated_at = now
        return _to_config(row)


def move_slot(
    engine: Engine,
    target: SyncTarget,
    *,
    expected_next_run_at: datetime | None,
    new_next_run_at: datetime,
    skip_reason: str | None = None,
    now: datetime | None = None,
) -> int | None:
    """Move a due target's `next_run_at` on from the slot the caller saw, once.

    Compare-and-set: if the row no longer holds `expected_next_run_at` (another tick, a claim
    or an operator moved it) nothing happens and None is returned. With `skip_reason`, a
    SKIPPED history row (trigger SCHEDULE) is written in the same transaction and its id is
    returned, so a slot is recorded as skipped exactly once; without it, 0 is returned.
    `last_run_at` is left alone: nothing ran.
    """
    from moodle_assets.targets import SyncTrigger

    now = now or utcnow()
    with transaction(engine) as session:
        row = session.get(IntegrationSyncConfig, target.value, with_for_update=True)
        if row is None or not row.enabled or row.next_run_at != expected_next_run_at:
            return None
        row.next_run_at = new_next_run_at
        if skip_reason is None:
            return 0
        return add_skip_row(session, target.value, SyncTrigger.SCHEDULE.value, skip_reason, now=now)
