"""The sync engine against the emulator over HTTP, on SQLite and on real PostgreSQL."""
from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from moodle_assets.store.db import transaction
from moodle_assets.store.models import CourseCatalog, CourseCategory, User, UserCourseEnrollment
from moodle_assets.store.upserts import MassDeactivationRefused
from moodle_assets.sync.engine import sync_course_catalog, sync_enrollments, sync_user_directory
from moodle_assets.sync.fetch import MoodleFetcher
from moodle_assets.sync.options import SyncOptions
from resources.moodle import MoodleAuthenticationError, MoodleResource, MoodleTransientError


def sync_all(fetcher, engine, options):
    return [f(fetcher, engine, options) for f in (sync_course_catalog, sync_user_directory, sync_enrollments)]


def snapshot(engine) -> dict:
    """Every stored row of the four data tables, as plain tuples."""
    out = {}
    with transaction(engine) as session:
        for model in (CourseCategory, CourseCatalog, User, UserCourseEnrollment):
            cols = [c.name for c in model.__table__.columns]
            out[model.__tablename__] = sorted(
                tuple(getattr(row, c) for c in cols) for row in session.scalars(select(model))
            )
    return out


def courses(engine) -> dict[str, CourseCatalog]:
    with transaction(engine) as s:
        return {c.shortname: c for c in s.scalars(select(CourseCatalog))}


def users(engine) -> dict[str, User]:
    with transaction(engine) as s:
        return {u.username: u for u in s.scalars(select(User))}


def enrolments(engine) -> dict[tuple[str, str], UserCourseEnrollment]:
    with transaction(engine) as s:
        rows = s.execute(
            select(User.username, CourseCatalog.shortname, UserCourseEnrollment)
            .join(User, User.id == UserCourseEnrollment.user_id)
            .join(CourseCatalog, CourseCatalog.id == UserCourseEnrollment.course_id)
        ).all()
    return {(u, c): e for u, c, e in rows}


def test_first_sync_stores_exactly_the_real_site(migrated_engine, fetcher, options):
    results = sync_all(fetcher, migrated_engine, options)
    assert [r.counts.rejected for r in results] == [0, 0, 0]

    with transaction(migrated_engine) as s:
        cats = {c.moodle_category_id: c for c in s.scalars(select(CourseCategory))}
    assert cats[4].name == "Languages & Culture"  # HTML-unescaped
    assert cats[3].parent_moodle_category_id == 2 and cats[3].path == "/2/3" and cats[3].depth == 2
    assert cats[2].parent_moodle_category_id is None

    c = courses(migrated_engine)
    assert set(c) == {"PY101", "JS201", "WEB100", "DE-A1", "HIDDEN1", "EMPTY"}  # no site course
    assert (c["PY101"].price, c["PY101"].currency) == (Decimal("49.90"), "EUR")
    assert (c["JS201"].price, c["JS201"].currency) == (Decimal("0"), "USD")  # free is a price
    assert (c["WEB100"].price, c["WEB100"].currency) == (Decimal("1234.50"), "USD")
    assert (c["DE-A1"].price, c["DE-A1"].currency) == (None, None)
    assert c["HIDDEN1"].is_visible is False and c["PY101"].is_visible is True
    assert c["DE-A1"].fullname == "Deutsch für Anfänger – Café & Straße"
    assert c["PY101"].id_number == "EXT-PY101" and c["WEB100"].id_number is None
    assert c["PY101"].start_at.tzinfo is not None
    assert c["WEB100"].category_id == next(k.id for k in cats.values() if k.moodle_category_id == 3)

    u = users(migrated_engine)
    assert "guest" not in u and len(u) == 14
    assert u["upper"].email == "ursula.upper@example.com"
    assert u["noemailuser"].email is None
    assert u["suspended.user"].is_suspended is True and u["alice"].is_suspended is False
    assert u["alice"].id_number == "EMP-001"
    assert u["jose.muller"].first_name == "José"

    e = enrolments(migrated_engine)
    assert len(e) == 22
    py101 = {user: row for (user, course), row in e.items() if course == "PY101"}
    assert len(py101) == 12
    inactive = {user for user, row in py101.items() if not row.is_active}
    assert inactive == {"enrolsuspended", "expired", "future"}
    assert py101["suspended.user"].is_active  # a suspended account is not a suspended enrolment
    assert py101["dualrole"].roles == "editingteacher,student"
    assert py101["teacher1"].roles == "editingteacher"
    assert py101["alice"].last_access_at is not None and py101["upper"].last_access_at is None
    assert e[("jose.muller", "JS201")].is_active is False
    assert all(row.first_seen_at is not None for row in e.values())


def test_second_sync_writes_nothing(migrated_engine, fetcher, options):
    sync_all(fetcher, migrated_engine, options)
    before = snapshot(migrated_engine)
    again = sync_all(fetcher, migrated_engine, options)
    assert [(r.counts.inserted, r.counts.updated, r.counts.deactivated) for r in again] == [(0, 0, 0)] * 3
    assert [r.counts.unchanged for r in again] == [10, 14, 22]
    assert snapshot(migrated_engine) == before  # not even synced_at moved


def test_scripted_changes_land(migrated_engine, fetcher, options, site):
    sync_all(fetcher, migrated_engine, options)
    alice_id = users(migrated_engine)["alice"].id
    site.mutate(
        {"op": "remove_course", "course_id": 5},  # DE-A1
        {"op": "suspend_enrolment", "course_id": 2, "user_id": 4},  # bob in PY101
        {"op": "add_user", "username": "newbie", "email": "New.Bie@Example.org", "firstname": "New", "lastname": "Bie"},
        {"op": "set_course_price", "course_id": 2, "price": 59.5},
        {"op": "set_user_email", "user_id": 3, "email": "Alice.Renamed@Example.ORG"},
        {"op": "set_user_email", "user_id": 6, "email": "URSULA.UPPER@example.com"},  # only the case changes
    )
    results = sync_all(fetcher, migrated_engine, options)

    c = courses(migrated_engine)
    assert c["DE-A1"].is_active is False and c["PY101"].is_active
    assert c["PY101"].price == Decimal("59.5")
    e = enrolments(migrated_engine)
    assert not e[("jose.muller", "DE-A1")].is_active and not e[("oconnor", "DE-A1")].is_active
    assert e[("bob", "PY101")].is_active is False
    u = users(migrated_engine)
    assert u["newbie"].email == "new.bie@example.org" and u["newbie"].is_active
    assert u["alice"].email == "alice.renamed@example.org" and u["alice"].id == alice_id  # followed, not duplicated
    assert u["upper"].email == "ursula.upper@example.com"
    assert results[1].counts.inserted == 1 and results[1].counts.updated == 1  # newbie; alice (not upper)
    assert len(u) == 15


def test_removed_user_is_deactivated_not_deleted(migrated_engine, fetcher, options, site):
    sync_all(fetcher, migrated_engine, options)
    site.mutate({"op": "remove_user", "user_id": 15})  # loner
    result = sync_user_directory(fetcher, migrated_engine, options)
    assert result.counts.deactivated == 1
    assert users(migrated_engine)["loner"].is_active is False


def test_existing_local_user_is_linked_by_email(migrated_engine, fetcher, options):
    with transaction(migrated_engine) as s:
        s.add(User(email="alice@example.com", username="local-alice", is_active=True))
    sync_course_catalog(fetcher, migrated_engine, options)
    result = sync_user_directory(fetcher, migrated_engine, options)
    u = users(migrated_engine)
    assert "local-alice" not in u and u["alice"].moodle_user_id == 3
    assert result.counts.inserted == 13 and result.counts.updated == 1


def test_email_linked_to_another_moodle_id_is_rejected_not_merged(migrated_engine, fetcher, options):
    with transaction(migrated_engine) as s:
        s.add(User(email="alice@example.com", moodle_user_id=999, username="other", is_active=True))
    result = sync_user_directory(fetcher, migrated_engine, options)
    assert result.counts.rejected == 1
    assert result.rejected[0][0] == 3 and "already linked to Moodle user 999" in result.rejected[0][1]
    assert users(migrated_engine)["other"].email == "alice@example.com"


def test_failure_mid_sync_leaves_previous_data_intact(migrated_engine, fetcher, options, site):
    sync_all(fetcher, migrated_engine, options)
    before = snapshot(migrated_engine)
    site.mutate({"op": "suspend_enrolment", "course_id": 2, "user_id": 3})
    # Enrolments of the third course fail with 503s beyond the retry budget.
    site.faults({"script": [{"fault": "http_503", "count": 50, "wsfunction": "core_enrol_get_enrolled_users", "after": 4}]})
    with pytest.raises(MoodleTransientError):
        sync_enrollments(fetcher, migrated_engine, options)
    assert snapshot(migrated_engine) == before
    site.faults({})
    assert sync_enrollments(fetcher, migrated_engine, options).counts.updated == 1


def test_dropped_connection_mid_catalog_leaves_data_intact(migrated_engine, fetcher, options, site):
    sync_all(fetcher, migrated_engine, options)
    before = snapshot(migrated_engine)
    site.mutate({"op": "set_course_price", "course_id": 2, "price": 1})
    site.faults({"script": [{"fault": "drop_connection", "count": 10, "wsfunction": "core_course_get_courses_by_field"}]})
    with pytest.raises(MoodleTransientError):
        sync_course_catalog(fetcher, migrated_engine, options)
    assert snapshot(migrated_engine) == before


def test_empty_lists_trip_the_mass_deactivation_guard(migrated_engine, fetcher, site):
    options = SyncOptions(deactivation_guard_min_rows=2)
    sync_all(fetcher, migrated_engine, options)
    before = snapshot(migrated_engine)
    site.faults({"empty_lists": True})
    with pytest.raises(MassDeactivationRefused, match="refusing to mark 4 of 4 active categories inactive"):
        sync_course_catalog(fetcher, migrated_engine, options)
    with pytest.raises(MassDeactivationRefused, match="refusing to mark 14 of 14 active users inactive"):
        sync_user_directory(fetcher, migrated_engine, options)
    with pytest.raises(MassDeactivationRefused):
        sync_enrollments(fetcher, migrated_engine, options)
    assert snapshot(migrated_engine) == before


def test_bad_token_fails_fast_with_a_clear_message(migrated_engine, emulator, site):
    client = MoodleResource(url=emulator.url, token="not-the-token").get_client()
    with pytest.raises(MoodleAuthenticationError) as info:
        sync_course_catalog(MoodleFetcher(client), migrated_engine, SyncOptions())
    assert "MOODLE_TOKEN" in str(info.value) and "not-the-token" not in str(info.value)
    assert site.counters()["requests_total"] == 1  # no retries for a permanent error


def test_requests_are_the_minimum_plan(migrated_engine, fetcher, options, site):
    site.faults({})
    requests_before = site.counters()["requests_total"]
    sync_all(fetcher, migrated_engine, options)
    by_function = site.counters()["by_function"]
    assert by_function["core_course_get_categories"] == 1
    assert by_function["core_course_get_courses_by_field"] == 1
    assert by_function["core_user_get_users_by_field"] == 1  # 15 users: one batch
    # 1 user-id listing + 2 passes for each of the 6 courses
    assert by_function["core_enrol_get_enrolled_users"] == 1 + 2 * 6
    # who the token is, once per target; a site administrator needs no capability probe
    assert by_function["core_webservice_get_site_info"] == 3
    assert site.counters()["requests_total"] - requests_before == 19
