"""The change log, written by real syncs against the emulator, on SQLite and on real PostgreSQL."""
from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import event, select, update

from moodle_assets.core.clock import utcnow
from moodle_assets.store.changelog import ChangeLog
from moodle_assets.store.db import transaction
from moodle_assets.store.models import CourseCatalog, IntegrationChangeLog, User, UserCourseEnrollment
from moodle_assets.store.upserts import MassDeactivationRefused
from moodle_assets.sync.engine import SyncControl, sync_course_catalog, sync_enrollments, sync_user_directory
from moodle_assets.sync.options import SyncOptions

SYNCS = (sync_course_catalog, sync_user_directory, sync_enrollments)


def sync_all(fetcher, engine, options, first_run_id: int = 1):
    return [
        f(fetcher, engine, options, SyncControl(run_id=first_run_id + i)) for i, f in enumerate(SYNCS)
    ]


def log_rows(engine, **where) -> list[IntegrationChangeLog]:
    with transaction(engine) as s:
        query = select(IntegrationChangeLog).order_by(IntegrationChangeLog.id)
        for name, value in where.items():
            query = query.where(getattr(IntegrationChangeLog, name) == value)
        return list(s.scalars(query))


def by_key(rows) -> dict[tuple[str, str], IntegrationChangeLog]:
    return {(r.entity, r.moodle_key): r for r in rows}


def test_first_sync_logs_every_insert_with_its_run_and_target(migrated_engine, fetcher, options):
    results = sync_all(fetcher, migrated_engine, options, first_run_id=11)
    rows = log_rows(migrated_engine)
    assert {r.kind for r in rows} == {"inserted"}
    assert Counter((r.run_id, r.target) for r in rows) == {
        (11, "COURSE_CATALOG"): results[0].counts.inserted,
        (12, "USER_DIRECTORY"): results[1].counts.inserted,
        (13, "ENROLLMENTS"): results[2].counts.inserted,
    }
    assert Counter(r.entity for r in rows) == {"category": 4, "course": 6, "user": 14, "enrollment": 22}
    keys = by_key(rows)
    assert ("course", "2") in keys and ("user", "3") in keys and ("enrollment", "course 2 user 4") in keys
    assert all(r.changed_at.tzinfo is not None and r.changed_columns is None for r in rows)
    # What the sync reports equals what it wrote.
    assert results[2].changes.by_kind == {"inserted": 22} and len(results[2].changes.sample) == 10


def test_every_kind_of_change_is_logged_with_its_columns(migrated_engine, fetcher, options, site):
    sync_all(fetcher, migrated_engine, options, first_run_id=1)
    with transaction(migrated_engine) as s:
        de_a1 = {
            f"course 5 user {m}"
            for m in s.scalars(
                select(UserCourseEnrollment.moodle_user_id).where(
                    UserCourseEnrollment.moodle_course_id == 5, UserCourseEnrollment.is_active.is_(True)
                )
            )
        }
    assert de_a1
    site.mutate(
        {"op": "remove_course", "course_id": 5},  # DE-A1: course and its enrollments deactivated
        {"op": "set_course_price", "course_id": 2, "price": 59.5},  # PY101: a price change
        {"op": "hide_course", "course_id": 3},  # JS201: visibility
        {"op": "suspend_enrolment", "course_id": 2, "user_id": 4},  # bob in PY101
        {"op": "add_user", "username": "newbie", "email": "new@example.org", "firstname": "New", "lastname": "Bie"},
        {"op": "set_user_email", "user_id": 3, "email": "alice.renamed@example.org"},
        {"op": "remove_user", "user_id": 15},  # loner
    )
    sync_all(fetcher, migrated_engine, options, first_run_id=4)

    catalog = by_key(log_rows(migrated_engine, run_id=4))
    assert catalog[("course_price", "2")].kind == "updated"
    assert catalog[("course_price", "2")].changed_columns == "price"
    assert ("course", "2") not in catalog  # only the price changed
    assert catalog[("course", "3")].kind == "updated" and catalog[("course", "3")].changed_columns == "is_visible"
    assert catalog[("course", "5")].kind == "deactivated"
    closed_with_course = [r for r in catalog.values() if r.entity == "enrollment"]
    assert closed_with_course and all(r.kind == "deactivated" and r.target == "COURSE_CATALOG" for r in closed_with_course)
    assert {r.moodle_key for r in closed_with_course} == de_a1

    people = by_key(log_rows(migrated_engine, run_id=5))
    assert people[("user", "3")].kind == "updated" and people[("user", "3")].changed_columns == "email"
    assert people[("user", "15")].kind == "deactivated"
    new_user = [r for r in people.values() if r.kind == "inserted"]
    assert len(new_user) == 1 and new_user[0].target == "USER_DIRECTORY"

    enrolled = by_key(log_rows(migrated_engine, run_id=6))
    assert enrolled[("enrollment", "course 2 user 4")].kind == "deactivated"
    assert all(r.target == "ENROLLMENTS" for r in enrolled.values())

    # Reactivations: an enrollment active again in Moodle; a user and a course this database had
    # marked inactive (as a sync does when they disappear) that Moodle lists again.
    site.mutate({"op": "enrol", "course_id": 2, "user_id": 4, "role": "student"})
    with transaction(migrated_engine) as s:
        s.execute(update(User).where(User.moodle_user_id == 7).values(is_active=False))
        s.execute(update(CourseCatalog).where(CourseCatalog.moodle_course_id == 4).values(is_active=False))
    sync_all(fetcher, migrated_engine, options, first_run_id=7)
    assert by_key(log_rows(migrated_engine, run_id=7))[("course", "4")].kind == "reactivated"
    assert by_key(log_rows(migrated_engine, run_id=8))[("user", "7")].kind == "reactivated"
    assert by_key(log_rows(migrated_engine, run_id=9))[("enrollment", "course 2 user 4")].kind == "reactivated"


def test_a_sync_that_changes_nothing_writes_nothing(migrated_engine, fetcher, options):
    sync_all(fetcher, migrated_engine, options)
    before = len(log_rows(migrated_engine))
    statements: list[str] = []
    listener = lambda conn, cursor, statement, *args: statements.append(statement)  # noqa: E731
    event.listen(migrated_engine, "before_cursor_execute", listener)
    try:
        again = sync_all(fetcher, migrated_engine, options, first_run_id=4)
    finally:
        event.remove(migrated_engine, "before_cursor_execute", listener)
    assert len(log_rows(migrated_engine)) == before
    assert [r.changes.total for r in again] == [0, 0, 0]
    writes = [s for s in statements if s.lstrip().split()[0].upper() in ("INSERT", "UPDATE", "DELETE")]
    assert any(s.lstrip().upper().startswith("SELECT") for s in statements)  # the listener saw the syncs
    assert writes == []


def test_a_failed_sync_logs_nothing(migrated_engine, fetcher, options, site):
    sync_all(fetcher, migrated_engine, options)
    before = log_rows(migrated_engine)
    site.mutate({"op": "set_course_price", "course_id": 2, "price": 1}, {"op": "suspend_enrolment", "course_id": 2, "user_id": 3})

    def refuse(_session):
        raise RuntimeError("injected: the fence refuses the commit")

    with pytest.raises(RuntimeError, match="injected"):
        sync_course_catalog(fetcher, migrated_engine, options, SyncControl(run_id=99, fence=refuse))
    with pytest.raises(RuntimeError, match="injected"):
        sync_enrollments(fetcher, migrated_engine, options, SyncControl(run_id=98, fence=refuse))
    assert [r.id for r in log_rows(migrated_engine)] == [r.id for r in before]
    # The same changes, committed this time, are logged.
    sync_course_catalog(fetcher, migrated_engine, options, SyncControl(run_id=100))
    assert [r.entity for r in log_rows(migrated_engine, run_id=100)] == ["course_price"]


def test_a_refused_mass_deactivation_logs_nothing(migrated_engine, fetcher, site):
    options = SyncOptions(deactivation_guard_min_rows=2)
    sync_all(fetcher, migrated_engine, options)
    count = len(log_rows(migrated_engine))
    site.faults({"empty_lists": True})
    with pytest.raises(MassDeactivationRefused):
        sync_user_directory(fetcher, migrated_engine, options, SyncControl(run_id=50))
    assert len(log_rows(migrated_engine)) == count


def _old_rows(engine, ages_days: list[int]) -> None:
    now = utcnow()
    with transaction(engine) as s:
        for age in ages_days:
            log = ChangeLog(target="USER_DIRECTORY", run_id=1000 + age, retention_days=0)
            log.add("user", age, "updated", ["email"])
            log.flush(s, now=now - timedelta(days=age))


def test_rows_past_the_retention_are_pruned_by_the_next_sync(migrated_engine, fetcher, site):
    _old_rows(migrated_engine, [200, 31, 29])
    sync_user_directory(fetcher, migrated_engine, SyncOptions(changelog_retention_days=30), SyncControl(run_id=1))
    left = {r.run_id for r in log_rows(migrated_engine) if r.run_id and r.run_id >= 1000}
    assert left == {1029}
    assert len(log_rows(migrated_engine, run_id=1)) == 14  # this sync's own rows stay


def test_retention_zero_turns_the_change_log_off(migrated_engine, fetcher, site):
    _old_rows(migrated_engine, [400])
    options = SyncOptions(changelog_retention_days=0)
    results = sync_all(fetcher, migrated_engine, options)
    assert [r.counts.inserted for r in results] == [10, 14, 22]  # the data is written
    assert all(not r.changes.enabled for r in results)
    assert [r.run_id for r in log_rows(migrated_engine)] == [1400]  # nothing logged, nothing pruned


def _documented_queries() -> list[str]:
    from pathlib import Path
    import re as _re

    text = (Path(__file__).resolve().parents[2] / "docs" / "data.md").read_text()
    examples = text.split("## Example queries", 1)[1]
    return _re.findall(r"```sql\n(.*?)```", examples, flags=_re.S)


def test_the_example_queries_in_docs_data_md_answer_on_both_databases(migrated_engine, fetcher, options, site):
    from sqlalchemy import text

    from moodle_assets.history import SyncHistory
    from moodle_assets.core.targets import SyncStatus, SyncTarget, SyncTrigger

    sync_all(fetcher, migrated_engine, options, first_run_id=101)  # run ids no history row has
    site.mutate({"op": "suspend_enrolment", "course_id": 2, "user_id": 4})
    history = SyncHistory(migrated_engine)
    claim = history.claim(SyncTarget.ENROLLMENTS, SyncTrigger.CLI)
    owner = history.take(claim.run_id, "test")
    sync_enrollments(fetcher, migrated_engine, options, SyncControl(run_id=claim.run_id))
    assert history.finish(owner, SyncStatus.SUCCESS)
    students, changed, priced, suspended, last = _documented_queries()
    yesterday = utcnow() - timedelta(days=1)
    with migrated_engine.connect() as c:
        assert {r.moodle_user_id for r in c.execute(text(students), {"course": 2})} >= {3, 5}
        assert 4 not in {r.moodle_user_id for r in c.execute(text(students), {"course": 2})}
        changes = c.execute(text(changed), {"yesterday": yesterday}).all()
        assert len(changes) == 23 and changes[-1].moodle_user_id == 4 and changes[-1].kind == "deactivated"
        assert {r.shortname for r in c.execute(text(priced))} == {"PY101", "JS201", "WEB100", "HIDDEN1"}
        suspended_id = c.execute(text("SELECT moodle_user_id FROM users WHERE username = 'suspended.user'")).scalar()
        found = c.execute(text(suspended)).all()
        assert found and {r.moodle_user_id for r in found} == {suspended_id} and "PY101" in {r.shortname for r in found}
        assert [(r.entity, r.moodle_key, r.kind) for r in c.execute(text(last))] == [
            ("enrollment", "course 2 user 4", "deactivated")
        ]
