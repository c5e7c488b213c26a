"""The tick plan (pure) and the config-table writes the sensor relies on."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from moodle_assets.store.db import transaction
from moodle_assets.store.models import IntegrationSyncRun
from moodle_assets.core.targets import SyncTarget
from schedules.config_table import TargetConfig, get_config, list_configs, move_slot, update_config
from schedules.plan import Action, plan_tick, run_key

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
CC, UD, EN = SyncTarget.COURSE_CATALOG, SyncTarget.USER_DIRECTORY, SyncTarget.ENROLLMENTS


def cfg(target, enabled=True, every=60, next_run_at=NOW, last_run_at=None):
    return TargetConfig(target, enabled, every, last_run_at, next_run_at, None)


def actions(decisions):
    return {d.target: d.action for d in decisions}


def test_disabled_never_due_and_not_due_yet():
    plan = plan_tick([cfg(CC, enabled=False, next_run_at=NOW - timedelta(days=3)), cfg(UD, next_run_at=NOW + timedelta(minutes=1))], {}, NOW)
    assert actions(plan) == {CC: Action.DISABLED, UD: Action.NOT_DUE}
    assert "disabled" in plan[0].reason and "2025-03-01 12:01:00Z" in plan[1].reason


def test_due_and_free_launches_due_and_busy_skips_to_the_next_slot():
    plan = plan_tick([cfg(CC), cfg(UD, every=30, next_run_at=NOW - timedelta(minutes=45))], {UD: "sync run #7"}, NOW)
    assert actions(plan) == {CC: Action.LAUNCH, UD: Action.SKIP}
    skip = plan[1]
    # slot 11:15 every 30 min, now 12:00 -> 12:15 (phase kept, missed 11:45 dropped)
    assert skip.next_slot == NOW + timedelta(minutes=15)
    assert "sync run #7" in skip.reason and "still syncing" in skip.reason and "12:15:00Z" in skip.reason


def test_enrollments_wait_for_due_or_running_upstreams_and_then_launch():
    configs = [cfg(CC), cfg(UD, next_run_at=NOW + timedelta(hours=1)), cfg(EN)]
    assert actions(plan_tick(configs, {}, NOW))[EN] is Action.WAIT
    configs = [cfg(CC, next_run_at=NOW + timedelta(hours=1)), cfg(UD, next_run_at=NOW + timedelta(hours=1)), cfg(EN)]
    plan = plan_tick(configs, {UD: "sync run #3"}, NOW)
    assert actions(plan)[EN] is Action.WAIT and "USER_DIRECTORY" in plan[2].reason
    assert actions(plan_tick(configs, {}, NOW))[EN] is Action.LAUNCH
    # a disabled upstream never holds enrollments back
    configs = [cfg(CC, enabled=False), cfg(UD, enabled=False), cfg(EN)]
    assert actions(plan_tick(configs, {}, NOW))[EN] is Action.LAUNCH


def test_busy_target_is_skipped_even_when_its_upstream_is_due():
    plan = plan_tick([cfg(CC), cfg(EN)], {EN: "sync run #1"}, NOW)
    assert actions(plan) == {CC: Action.LAUNCH, EN: Action.SKIP}


def test_run_key_names_the_slot():
    assert run_key(cfg(CC)) == "COURSE_CATALOG:2025-03-01T12:00:00+00:00"
    assert run_key(cfg(EN, next_run_at=None)) == "ENROLLMENTS:unscheduled-after-never"


def test_update_config_recomputes_next_run(migrated_engine):
    assert all(not c.enabled and c.next_run_at is None for c in list_configs(migrated_engine))
    c = update_config(migrated_engine, EN, enabled=True, frequency_minutes="30", now=NOW)
    assert (c.enabled, c.frequency_minutes, c.next_run_at) == (True, 30, NOW)  # never ran: due now
    c = update_config(migrated_engine, EN, enabled=False, now=NOW)
    assert c.next_run_at is None
    assert get_config(migrated_engine, EN).updated_at == NOW


def test_move_slot_is_compare_and_set(migrated_engine):
    """The config half of a skipped slot (the history records the SKIPPED row in the same transaction)."""
    update_config(migrated_engine, CC, enabled=True, frequency_minutes=60, now=NOW)
    later = NOW + timedelta(hours=1)
    with transaction(migrated_engine) as session:
        assert move_slot(session, CC, expected_next_run_at=NOW, new_next_run_at=later)
    with transaction(migrated_engine) as session:
        assert not move_slot(session, CC, expected_next_run_at=NOW, new_next_run_at=later)
    assert get_config(migrated_engine, CC).next_run_at == later
    with transaction(migrated_engine) as s:
        assert s.scalars(select(IntegrationSyncRun)).all() == []  # nothing ran, nothing recorded here
    # a disabled target's slot is never moved
    update_config(migrated_engine, UD, enabled=False)
    with transaction(migrated_engine) as session:
        assert not move_slot(session, UD, expected_next_run_at=None, new_next_run_at=later)