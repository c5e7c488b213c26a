"""Pure scheduling maths: no drift, no catch-up storm, phase kept, frequency validated."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schedules.config_table import (
    MAX_FREQUENCY_MINUTES,
    MIN_FREQUENCY_MINUTES,
    ConfigValidationError,
    parse_frequency,
)
from schedules.due import is_due, next_run_after_change, next_slot

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
instants = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(timezone.utc)
)
frequencies = st.integers(MIN_FREQUENCY_MINUTES, MAX_FREQUENCY_MINUTES)
delays = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=400))


@settings(max_examples=300, deadline=None)
@given(slot=instants, delay=delays, freq=frequencies)
def test_next_slot_is_in_the_future_keeps_phase_and_allows_one_run_after_downtime(slot, delay, freq):
    started = slot + delay  # the tick that ran the slot came `delay` late (up to a year of downtime)
    nxt = next_slot(scheduled_at=slot, started_at=started, frequency_minutes=freq)
    period = timedelta(minutes=freq)
    assert nxt > started  # always in the future of the start: never due again at once
    assert nxt - started <= period  # no catch-up storm: the missed slots are dropped, not replayed
    assert (nxt - slot) % period == timedelta(0)  # phase kept: no drift from late ticks or slow runs


@settings(max_examples=200, deadline=None)
@given(slot=instants, delay=delays, freq=frequencies)
def test_after_downtime_exactly_one_run_then_the_normal_rhythm(slot, delay, freq):
    """Simulate a sensor ticking every minute after `delay` of downtime: one run, then one per period."""
    period = timedelta(minutes=freq)
    now = slot + delay
    next_run = slot
    runs = []
    for _ in range(3):  # three runs from the moment the system comes back
        assert is_due(enabled=True, next_run_at=next_run, now=max(now, next_run))
        now = max(now, next_run)
        runs.append(now)
        next_run = next_slot(scheduled_at=next_run, started_at=now, frequency_minutes=freq)
        assert not is_due(enabled=True, next_run_at=next_run, now=now)
    # The first run after downtime happens once; the following ones are a period apart.
    assert runs[2] - runs[1] == period
    assert runs[1] - runs[0] <= period


@given(start=instants, freq=frequencies, lateness=st.timedeltas(min_value=timedelta(0), max_value=timedelta(seconds=59)))
def test_late_ticks_do_not_drift(start, freq, lateness):
    """Every run starts `lateness` after its slot; the slots stay on the original grid."""
    slot = start
    for i in range(1, 6):
        slot = next_slot(scheduled_at=slot, started_at=slot + lateness, frequency_minutes=freq)
        if lateness < timedelta(minutes=freq):
            assert slot == start + i * timedelta(minutes=freq)


def test_a_run_that_starts_before_its_slot_restarts_the_rhythm_from_its_start():
    # e.g. a manual run at 11:00 when the next scheduled run was 12:00 (hourly): next is 12:00
    nxt = next_slot(scheduled_at=T0, started_at=T0 - timedelta(hours=1), frequency_minutes=60)
    assert nxt == T0
    # never scheduled before: a period after the start
    assert next_slot(scheduled_at=None, started_at=T0, frequency_minutes=15) == T0 + timedelta(minutes=15)


def test_is_due_rules():
    assert not is_due(enabled=False, next_run_at=T0 - timedelta(days=1), now=T0)
    assert not is_due(enabled=False, next_run_at=None, now=T0)
    assert is_due(enabled=True, next_run_at=None, now=T0)  # enabled, never scheduled: now
    assert is_due(enabled=True, next_run_at=T0, now=T0)
    assert not is_due(enabled=True, next_run_at=T0 + timedelta(seconds=1), now=T0)


@given(last=st.one_of(st.none(), instants), now=instants, freq=frequencies)
def test_next_run_after_change(last, now, freq):
    assert next_run_after_change(enabled=False, frequency_minutes=freq, last_run_at=last, now=now) is None
    nxt = next_run_after_change(enabled=True, frequency_minutes=freq, last_run_at=last, now=now)
    assert nxt >= now  # never in the past: a change never triggers a catch-up
    if last is None:
        assert nxt == now
    else:
        assert nxt == max(now, last + timedelta(minutes=freq))


@given(value=frequencies)
def test_frequency_in_range_is_accepted_as_int_or_text(value):
    assert parse_frequency(value) == value
    assert parse_frequency(f" {value} ") == value


@pytest.mark.parametrize(
    "value", [0, -5, MAX_FREQUENCY_MINUTES + 1, "0", "1.5", "abc", "", " ", "-3", 1.0, True, None, "1e3"]
)
def test_frequency_out_of_range_or_not_whole_is_refused_with_a_clear_message(value):
    with pytest.raises(ConfigValidationError) as info:
        parse_frequency(value)
    assert "frequency must be" in str(info.value)
