"""Read and write the per-target config rows (`integration_sync_config`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from moodle_assets.core.clock import utcnow
from moodle_assets.core.targets import SyncTarget
from moodle_assets.store.db import transaction
from moodle_assets.store.models import IntegrationSyncConfig

from .due import next_run_after_change, next_slot

# Bounds for frequency_minutes: at least once every 30 days, at most every minute.
MIN_FREQUENCY_MINUTES = 1
MAX_FREQUENCY_MINUTES = 60 * 24 * 30


# The rule, worded once for every message that refuses a frequency (CLI and admin page).
FREQUENCY_RULE = f"frequency must be between {MIN_FREQUENCY_MINUTES} and {MAX_FREQUENCY_MINUTES} minutes (30 days)"


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
        raise ConfigValidationError(f"{FREQUENCY_RULE}, a whole number")
    if isinstance(value, str):
        text = value.strip()
        # ASCII digits only: str.isdigit() also accepts "²" and "١٢", which int() refuses
        if not (text.isascii() and text.isdigit()):
            raise ConfigValidationError(f"{FREQUENCY_RULE}, a whole number; got {value[:40]!r}")
        if len(text.lstrip("0")) > len(str(MAX_FREQUENCY_MINUTES)):  # and int() refuses > 4,300 digits
            raise ConfigValidationError(f"{FREQUENCY_RULE}, got {text[:12]}…")
        value = int(text)
    if not isinstance(value, int):
        raise ConfigValidationError(f"{FREQUENCY_RULE}, a whole number; got {value!r}")
    if not MIN_FREQUENCY_MINUTES <= value <= MAX_FREQUENCY_MINUTES:
        raise ConfigValidationError(f"{FREQUENCY_RULE}, got {value}")
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


def mark_started(session: Session, target: SyncTarget, now: datetime) -> None:
    """A sync of `target` started (in the caller's transaction): `last_run_at` is now and the
    next slot keeps the rhythm of the one just taken (`due.next_slot`)."""
    config = session.get(IntegrationSyncConfig, target.value)
    if config is None:
        return
    config.next_run_at = (
        next_slot(scheduled_at=config.next_run_at, started_at=now, frequency_minutes=config.frequency_minutes)
        if config.enabled
        else None
    )
    config.last_run_at = now


def move_slot(
    session: Session,
    target: SyncTarget,
    *,
    expected_next_run_at: datetime | None,
    new_next_run_at: datetime,
) -> bool:
    """Move an enabled target's `next_run_at` on from the slot the caller saw, once, in the
    caller's transaction.

    Compare-and-set: if the row no longer holds `expected_next_run_at` (another tick, a claim
    or an operator moved it) nothing changes and False is returned. `last_run_at` is left
    alone: nothing ran. (`history.SyncHistory.skip_slot` records the skipped slot with it.)
    """
    row = session.get(IntegrationSyncConfig, target.value, with_for_update=True)
    if row is None or not row.enabled or row.next_run_at != expected_next_run_at:
        return False
    row.next_run_at = new_next_run_at
    return True
