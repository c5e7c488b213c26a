"""Spool: batches parked in a temporary file come back whole, in order, as often as asked."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from moodle_assets.store.spool import Spool


@pytest.mark.parametrize("plain", [False, True])
def test_batches_come_back_in_order_every_time(plain):
    batches = [
        [(1, "a@example.org", None, True, frozenset({"email"}))],
        [],  # nothing to park: skipped
        [(i, f"é{i}\t\n", i / 3, False, frozenset()) for i in range(3000)],
    ]
    if not plain:
        batches.append([{"id": 7, "at": datetime(2026, 1, 2, tzinfo=UTC)}])
    with Spool(plain=plain) as spool:
        for batch in batches:
            spool.add(batch)
        expected = [b for b in batches if b]
        assert list(spool.batches()) == expected
        spool.add([(9,)])  # adding after a read appends at the end
        assert list(spool.batches()) == [*expected, [(9,)]]
