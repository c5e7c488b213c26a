"""`apply_users` compares users batch by batch (memory flat in the number of users): whatever the
batch size, the rows written, the rejections and the change log are the same, including e-mail
swaps, links and conflicts whose two sides fall in different batches."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from moodle_assets.mappers import NOTHING_WITHHELD, UserRecord
from moodle_assets.store import upserts
from moodle_assets.store.changelog import ChangeLog
from moodle_assets.store.models import User

BEFORE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
SEEN = datetime(2026, 2, 27, 8, 30, 15, 250000, tzinfo=UTC)


def user(moodle_id: int, email: str | None, last: str = "Last", *, withheld=NOTHING_WITHHELD) -> UserRecord:
    return UserRecord(moodle_id, email, f"u{moodle_id}", "First", last, None, False, SEEN, True, NOW, withheld=withheld)


STORED = [user(i, f"u{i}@example.org") for i in range(1, 11)]

# The second sync, in an order that puts each pair of related rows in different batches of 1-3.
INCOMING = [
    user(1, "u1@example.org"),  # unchanged
    user(2, "u3@example.org"),  # swaps e-mails with 3 (a later batch)
    user(4, "u4@example.org", "Renamed"),  # updated
    user(5, "local@example.org"),  # takes the local user's e-mail while having a row: rejected
    user(20, "u6@example.org"),  # new id with 6's e-mail, 6 keeps it: rejected
    user(21, "linkme@example.org"),  # links the local user with no Moodle id
    user(22, "new@example.org"),  # inserted
    user(23, "new@example.org"),  # same e-mail as 22 in this sync: rejected
    user(3, "u2@example.org"),  # the other side of the swap
    user(7, None, "Hidden", withheld=frozenset({"email", "last_name"})),  # withheld: stored values kept
    user(9, "u9@example.org"),  # reactivated (stored inactive)
]
LISTED = [1, 2, 3, 4, 5, 6, 7, 9, 20, 21, 22, 23, 30]  # 8 and 10 no longer listed: deactivated


def seed(session: Session) -> None:
    upserts.apply_users(session, STORED, now=BEFORE, guard=upserts.DeactivationGuard())
    session.add(
        User(moodle_user_id=None, email="linkme@example.org", first_name="Local", is_active=True, synced_at=BEFORE)
    )
    session.add(
        User(moodle_user_id=None, email="local@example.org", first_name="Other", is_active=True, synced_at=BEFORE)
    )
    session.execute(User.__table__.update().where(User.moodle_user_id == 9).values(is_active=False))


def second_sync(engine, batch_size: int):
    """Apply INCOMING to a freshly seeded store; return what it did, then roll everything back."""
    with Session(engine) as session:
        session.begin()
        seed(session)
        changes = ChangeLog("user_directory")
        result = upserts.apply_users(
            session,
            INCOMING,
            now=NOW,
            guard=upserts.DeactivationGuard(max_fraction=1.0),
            listed=LISTED,
            changes=changes,
            batch_size=batch_size,
        )
        users = User.__table__.c
        rows = session.execute(
            select(
                users.moodle_user_id, users.email, users.last_name, users.is_active, users.synced_at, users.first_name
            ).order_by(users.moodle_user_id, users.email)
        ).all()
        session.rollback()
    return result, [tuple(r) for r in rows], changes.pending


def test_batch_size_changes_nothing_but_memory(migrated_engine):
    whole, whole_rows, whole_changes = second_sync(migrated_engine, 10_000)
    for size in (1, 2, 3):
        result, rows, changes = second_sync(migrated_engine, size)
        assert rows == whole_rows, size
        assert changes == whole_changes, size
        assert (result.inserted, result.updated, result.unchanged, result.deactivated) == (
            whole.inserted,
            whole.updated,
            whole.unchanged,
            whole.deactivated,
        ), size
        assert unnumbered(result.rejected) == unnumbered(whole.rejected), size


def unnumbered(rejected):
    """Rejections without local row ids (PostgreSQL does not roll its sequences back)."""
    return [(moodle_id, re.sub(r"\(id \d+\)", "(id N)", reason)) for moodle_id, reason in rejected]


def test_second_sync_outcome(migrated_engine):
    result, rows, changes = second_sync(migrated_engine, 2)
    by_id = {r[0]: r for r in rows if r[0] is not None}
    assert by_id[2][1] == "u3@example.org" and by_id[3][1] == "u2@example.org"  # swapped across batches
    assert by_id[4][2] == "Renamed"
    assert by_id[21][1:4] == ("linkme@example.org", "Last", True) and by_id[21][5] == "First"  # linked row
    assert by_id[22][1] == "new@example.org" and 23 not in by_id and 20 not in by_id
    assert by_id[7][1:4] == ("u7@example.org", "Last", True)  # withheld: kept
    assert by_id[9][3] is True
    assert (by_id[8][3], by_id[10][3]) == (False, False)
    assert by_id[1][4] == BEFORE  # untouched: synced_at is when a sync last wrote the row
    assert [r for r in rows if r[0] is None] == [(None, "local@example.org", None, True, BEFORE, "Other")]
    reasons = dict(result.rejected)
    assert set(reasons) == {5, 20, 23}
    assert "belongs to another local user" in reasons[5]
    assert "already linked to Moodle user 6" in reasons[20]
    assert "also used by Moodle user 22" in reasons[23]
    # Updated: 2 and 3 (swap), 4, 21 (linked), 9 (reactivated); unchanged: 1, and 7 (nothing it may see changed).
    assert (result.inserted, result.updated, result.unchanged, result.deactivated) == (1, 5, 2, 2)
    kinds = {(key, kind) for _entity, key, kind, _cols in changes}
    assert {("22", "inserted"), ("9", "reactivated"), ("8", "deactivated"), ("10", "deactivated")} <= kinds
    linked = "moodle_user_id,username,first_name,last_name,is_suspended,last_access_at"
    assert ("21", "updated", linked) in {(k, kind, cols) for _e, k, kind, cols in changes}
    assert ("7", "updated") not in kinds  # nothing it may see changed


def test_a_generator_is_refused_it_would_be_read_once(migrated_engine):
    with Session(migrated_engine) as session, session.begin(), pytest.raises(TypeError, match="twice"):
        upserts.apply_users(session, iter(STORED), now=NOW, guard=upserts.DeactivationGuard())
