"""RowMapper maps a stream part by part with the duplicate checks spanning every part: the same
records and rejections as one map_rows call over the whole stream (the users step stages users
as they arrive instead of holding them all)."""

from __future__ import annotations

from datetime import UTC, datetime

from moodle_assets.mappers import RowMapper, map_moodle_user_row, map_rows

T = datetime(2026, 3, 1, tzinfo=UTC)


def row(moodle_id, email):
    return {"id": moodle_id, "username": f"u{moodle_id}", "firstname": "F", "lastname": "L", "email": email}


ROWS = [
    row(2, "a@example.org"),
    row(3, "b@example.org"),
    row(4, "c@example.org"),
    row(3, "other@example.org"),  # the same id again, in a later part
    row(5, "A@example.org"),  # 2's e-mail (case-insensitive), in a later part
    {"id": "x"},  # malformed
    row(6, None),
]


def test_parts_give_what_one_call_gives():
    whole = map_rows(map_moodle_user_row, ROWS, synced_at=T)
    mapper = RowMapper(map_moodle_user_row, synced_at=T)
    parts = [mapper.map(ROWS[i : i + 2]) for i in range(0, len(ROWS), 2)]
    assert [r for p in parts for r in p.records] == whole.records
    assert [r for p in parts for r in p.rejected] == whole.rejected
    assert [r.moodle_user_id for r in whole.records] == [2, 3, 4, 6]
    reasons = [r.reason for r in whole.rejected]
    assert any("duplicate" in reason for reason in reasons)
    assert any("already belongs to Moodle user 2" in reason for reason in reasons)
