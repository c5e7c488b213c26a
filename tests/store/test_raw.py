"""Driver-ready bulk inserts (store/raw.py) store exactly what the ORM would, on both backends."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from moodle_assets.store.db import transaction
from moodle_assets.store.models import User
from moodle_assets.store.raw import RawValues, insert_raw

AWKWARD = ["tab\there", "line\nbreak", "back\\slash \\N", "cr\rlf", "Café & Straße – “quotes” 'single'", "", None]


@pytest.mark.parametrize("when", [datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
                                  datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=timezone(timedelta(hours=-7))),
                                  None])
def test_insert_raw_round_trips_awkward_values(migrated_engine, when):
    with transaction(migrated_engine) as session:
        raw = RawValues(session)
        rows = [
            (1000 + i, f"u{i}@example.org", f"user{i}", text, text, text, raw.flag(i % 2 == 0), raw.ts(when),
             raw.flag(True), raw.ts(datetime(2026, 5, 6, tzinfo=UTC)))
            for i, text in enumerate(AWKWARD)
        ]
        columns = ("moodle_user_id", "email", "username", "first_name", "last_name", "id_number", "is_suspended",
                   "last_access_at", "is_active", "synced_at")
        insert_raw(session, "users", columns, rows)
    with transaction(migrated_engine) as session:
        stored = {u.moodle_user_id: u for u in session.scalars(select(User))}
    for i, text in enumerate(AWKWARD):
        u = stored[1000 + i]
        assert (u.first_name, u.last_name, u.id_number) == (text, text, text)
        assert u.is_suspended is (i % 2 == 0) and u.is_active is True
        assert u.last_access_at == when  # same instant, read back in UTC
        assert u.synced_at == datetime(2026, 5, 6, tzinfo=UTC)


def test_stored_text_timestamps_match_sqlalchemys(migrated_engine):
    """On SQLite the raw text must be byte-identical to what the ORM writes, or diffs would see
    every stored row as changed."""
    if migrated_engine.dialect.name != "sqlite":
        pytest.skip("SQLite stores timestamps as text")
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    with transaction(migrated_engine) as session:
        session.add(User(moodle_user_id=1, email="a@example.org", is_active=True, synced_at=when, last_access_at=when))
    with migrated_engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT synced_at FROM users WHERE moodle_user_id = 1").scalar()
    assert RawValues(migrated_engine).ts(when) == stored
