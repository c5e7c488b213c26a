"""Alembic migrations on SQLite and on a real PostgreSQL server."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import inspect, select, text

from moodle_assets.store.db import create_app_engine, transaction
from moodle_assets.store.migrate import current_revision, downgrade, head_revision, upgrade
from moodle_assets.store.models import CONTRACT_TABLES, IntegrationSyncConfig, User
from moodle_assets.core.targets import SyncTarget

CONTRACT_COLUMNS = {
    "integration_sync_config": {"target", "enabled", "frequency_minutes", "last_run_at", "next_run_at", "updated_at"},
    "integration_sync_run": {
        "id", "target", "status", "trigger", "dagster_run_id", "started_at", "finished_at", "rows_fetched",
        "rows_inserted", "rows_updated", "rows_deactivated", "rows_rejected", "error", "skip_reason",
    },
    "course_category": {
        "id", "moodle_category_id", "name", "parent_moodle_category_id", "path", "depth", "sort_order",
        "is_visible", "synced_at",
    },
    "course_catalog": {
        "id", "moodle_course_id", "category_id", "shortname", "fullname", "summary", "id_number", "is_visible",
        "start_at", "end_at", "price", "currency", "is_active", "synced_at",
    },
    "users": {
        "id", "email", "moodle_user_id", "username", "first_name", "last_name", "id_number", "is_suspended",
        "last_access_at", "is_active", "synced_at",
    },
    "user_course_enrollment": {
        "id", "user_id", "course_id", "moodle_user_id", "moodle_course_id", "is_active", "roles",
        "last_access_at", "first_seen_at", "synced_at",
    },
}


def test_upgrade_creates_contract_tables_and_seeds_config(db_url):
    upgrade(db_url)
    engine = create_app_engine(db_url)
    try:
        inspector = inspect(engine)
        tables = set(inspector.get_table_names())
        assert set(CONTRACT_TABLES) <= tables
        for table, columns in CONTRACT_COLUMNS.items():
            present = {c["name"] for c in inspector.get_columns(table)}
            assert columns <= present, f"{table} lacks {columns - present}"
        with transaction(engine) as session:
            rows = {r.target: r for r in session.scalars(select(IntegrationSyncConfig))}
        assert set(rows) == {t.value for t in SyncTarget}
        assert all(not r.enabled for r in rows.values()), "targets start disabled"
        assert all(r.frequency_minutes >= 15 for r in rows.values())
        assert current_revision(db_url) == head_revision()
    finally:
        engine.dispose()


def test_upgrade_is_idempotent_and_keeps_data(db_url):
    upgrade(db_url)
    engine = create_app_engine(db_url)
    with transaction(engine) as session:
        session.get(IntegrationSyncConfig, "ENROLLMENTS").frequency_minutes = 7
    upgrade(db_url)
    with transaction(engine) as session:
        assert session.get(IntegrationSyncConfig, "ENROLLMENTS").frequency_minutes == 7
        assert len(session.scalars(select(IntegrationSyncConfig)).all()) == 3
    engine.dispose()


def test_downgrade_to_base_and_back(db_url):
    upgrade(db_url)
    downgrade(db_url, "base")
    engine = create_app_engine(db_url)
    assert not set(CONTRACT_TABLES) & set(inspect(engine).get_table_names())
    assert current_revision(db_url) is None
    upgrade(db_url)
    assert set(CONTRACT_TABLES) <= set(inspect(create_app_engine(db_url)).get_table_names())
    engine.dispose()


def test_timestamps_are_utc_aware_on_every_backend(migrated_engine):
    moment = datetime(2026, 11, 26, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    with transaction(migrated_engine) as session:
        session.add(User(email="a@example.org", moodle_user_id=3, is_active=True, last_access_at=moment))
    with transaction(migrated_engine) as session:
        stored = session.scalars(select(User)).one().last_access_at
    assert stored.tzinfo is not None and stored.utcoffset() == timedelta(0)
    assert stored == moment


def test_naive_datetimes_are_refused(migrated_engine):
    with pytest.raises(Exception, match="naive datetime"):
        with transaction(migrated_engine) as session:
            session.add(User(email="b@example.org", moodle_user_id=4, is_active=True, last_access_at=datetime(2026, 1, 1)))


def test_email_unique_when_present_but_many_nulls_allowed(migrated_engine):
    with transaction(migrated_engine) as session:
        session.add_all([User(email=None, moodle_user_id=i, is_active=True) for i in (10, 11, 12)])
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError):
        with transaction(migrated_engine) as session:
            session.add_all([User(email="x@example.org", moodle_user_id=20, is_active=True),
                             User(email="x@example.org", moodle_user_id=21, is_active=True)])


def test_postgres_column_types(pg_url):
    upgrade(pg_url)
    engine = create_app_engine(pg_url)
    with engine.connect() as conn:
        types = dict(conn.execute(text(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'course_catalog'"
        )).all())
    assert types["price"] == "numeric"
    assert types["start_at"] == "timestamp with time zone"
    assert types["moodle_course_id"] == "bigint"
    engine.dispose()
