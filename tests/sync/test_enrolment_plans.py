"""Enrolments are diffed while the fetch runs, against rows read outside the write transaction;
a write to the store in between must not be overwritten by such a stale plan."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from moodle_assets.core.clock import utcnow
from moodle_assets.store.db import transaction
from moodle_assets.store.models import CourseCatalog, User, UserCourseEnrollment
from moodle_assets.sync.engine import SyncControl, sync_course_catalog, sync_enrollments, sync_user_directory


def enrolment_rows(engine) -> list[tuple]:
    with transaction(engine) as s:
        cols = [c.name for c in UserCourseEnrollment.__table__.columns]
        return sorted(tuple(getattr(r, c) for c in cols) for r in s.scalars(select(UserCourseEnrollment)))


def enrolments(engine) -> dict[tuple[str, str], bool]:
    """(username, course shortname) -> is_active"""
    with transaction(engine) as s:
        rows = s.execute(
            select(User.username, CourseCatalog.shortname, UserCourseEnrollment.is_active)
            .join(User, User.id == UserCourseEnrollment.user_id)
            .join(CourseCatalog, CourseCatalog.id == UserCourseEnrollment.course_id)
        ).all()
    return {(u, c): active for u, c, active in rows}


def local_id(engine, model, **where) -> int:
    with transaction(engine) as s:
        return s.scalars(select(model.id).filter_by(**where)).one()


def sync_all(fetcher, engine, options):
    return [f(fetcher, engine, options) for f in (sync_course_catalog, sync_user_directory, sync_enrollments)]


def test_the_plans_made_during_the_fetch_are_applied_when_nothing_wrote_meanwhile(
    migrated_engine, fetcher, options, site
):
    sync_all(fetcher, migrated_engine, options)
    site.mutate({"op": "suspend_enrolment", "course_id": 2, "user_id": 4})  # bob in PY101
    before = enrolment_rows(migrated_engine)
    result = sync_enrollments(fetcher, migrated_engine, options)
    assert result.details["enrollments_diffed_during_fetch"] is True
    assert (result.counts.inserted, result.counts.updated, result.counts.unchanged) == (0, 1, 21)
    assert enrolments(migrated_engine)[("bob", "PY101")] is False
    changed = [row for row in enrolment_rows(migrated_engine) if row not in before]
    assert len(changed) == 1  # only bob's row was written


def test_a_write_during_the_fetch_is_not_overwritten_by_a_stale_plan(migrated_engine, fetcher, options, site):
    sync_all(fetcher, migrated_engine, options)
    site.mutate({"op": "suspend_enrolment", "course_id": 2, "user_id": 4})  # bob in PY101
    py101 = local_id(migrated_engine, CourseCatalog, shortname="PY101")
    alice = local_id(migrated_engine, User, username="alice")
    wrote: list[bool] = []

    def another_writer() -> None:
        # e.g. another process deactivating alice's PY101 enrolment while this sync fetches;
        # Moodle still lists her as active there, so this sync must make her active again.
        if not wrote:
            with transaction(migrated_engine) as session:
                session.execute(
                    update(UserCourseEnrollment)
                    .where(UserCourseEnrollment.user_id == alice, UserCourseEnrollment.course_id == py101)
                    .values(is_active=False, synced_at=utcnow() + timedelta(seconds=1))
                )
            wrote.append(True)
        return None

    result = sync_enrollments(fetcher, migrated_engine, options, SyncControl(stop_reason=another_writer))
    assert wrote
    assert result.details["enrollments_diffed_during_fetch"] is False  # re-diffed in the transaction
    e = enrolments(migrated_engine)
    assert e[("alice", "PY101")] is True
    assert e[("bob", "PY101")] is False
    assert (result.counts.updated, result.counts.unchanged) == (2, 20)
