"""SQLAlchemy models for the app database.

Table and column names are a public contract (see docs/contracts.md "The app
database"); extra columns are allowed. Moodle ids are integers; timestamps are UTC-aware.
No sync ever deletes a row: what disappears from Moodle gets `is_active = false`.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..core.targets import SyncStatus, SyncTrigger
from .types import UTCDateTime

# Deterministic constraint names, so Alembic migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SYNC_STATUSES = tuple(s.value for s in SyncStatus)
SYNC_TRIGGERS = tuple(t.value for t in SyncTrigger)
CHANGE_KINDS = ("inserted", "updated", "deactivated", "reactivated")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class IntegrationSyncConfig(Base):
    """One row per sync target: the single source of truth for scheduling."""

    __tablename__ = "integration_sync_config"
    __table_args__ = (CheckConstraint("frequency_minutes >= 1", name="frequency_positive"),)

    target: Mapped[str] = mapped_column(String(32), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    frequency_minutes: Mapped[int] = mapped_column(Integer, nullable=False)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class IntegrationSyncRun(Base):
    """One row per sync attempt, whatever started it; SKIPPED attempts too."""

    __tablename__ = "integration_sync_run"
    __table_args__ = (
        CheckConstraint(_in("status", SYNC_STATUSES), name="status_known"),
        CheckConstraint(_in("trigger", SYNC_TRIGGERS), name="trigger_known"),
        Index("ix_integration_sync_run_target_started_at", "target", "started_at"),
        # At most one RUNNING row per target: the database itself refuses an overlap, so
        # two concurrent triggers can never both start a sync of the same target. Only an
        # explicit --force (forced = true) may run beside another.
        Index(
            "uq_integration_sync_run_one_running",
            "target",
            unique=True,
            sqlite_where=text(f"status = '{SyncStatus.RUNNING.value}' AND NOT forced"),
            postgresql_where=text(f"status = '{SyncStatus.RUNNING.value}' AND NOT forced"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    target: Mapped[str] = mapped_column(String(32), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    trigger: Mapped[str] = mapped_column(String(16), nullable=False)
    dagster_run_id: Mapped[str | None] = mapped_column(String(64), index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    forced: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # The run worker that owns this RUNNING row (set when the worker takes it) and when it began.
    worker_token: Mapped[str | None] = mapped_column(String(36))
    worker_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The process holding the row's liveness lock (see history/liveness.py) and which lock;
    # `worker_lock` NULL: no lock is held, the row is judged by Dagster run state and heartbeat.
    worker_host: Mapped[str | None] = mapped_column(String(255))
    worker_pid: Mapped[int | None] = mapped_column(Integer)
    worker_lock: Mapped[str | None] = mapped_column(Text)
    # When the sync's write transaction committed (written inside it).
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rows_fetched: Mapped[int | None] = mapped_column(Integer)
    rows_inserted: Mapped[int | None] = mapped_column(Integer)
    rows_updated: Mapped[int | None] = mapped_column(Integer)
    rows_unchanged: Mapped[int | None] = mapped_column(Integer)
    rows_deactivated: Mapped[int | None] = mapped_column(Integer)
    rows_rejected: Mapped[int | None] = mapped_column(Integer)
    rows_skipped: Mapped[int | None] = mapped_column(Integer)
    rows_unmatched: Mapped[int | None] = mapped_column(Integer)
    requests_made: Mapped[int | None] = mapped_column(Integer)
    retries: Mapped[int | None] = mapped_column(Integer)
    responses_429: Mapped[int | None] = mapped_column(Integer)
    backoff_seconds: Mapped[float | None] = mapped_column(Numeric(12, 3, asdecimal=False))
    error: Mapped[str | None] = mapped_column(Text)
    skip_reason: Mapped[str | None] = mapped_column(Text)
    # Who the token was (Moodle site info at the start of the sync) and what it could not see.
    token_user_id: Mapped[int | None] = mapped_column(BigInteger)
    token_username: Mapped[str | None] = mapped_column(Text)
    token_is_site_admin: Mapped[bool | None] = mapped_column(Boolean)
    warning: Mapped[str | None] = mapped_column(Text)


class CourseCategory(Base):
    __tablename__ = "course_category"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    moodle_category_id: Mapped[int] = mapped_column(BigInteger, nullable=False, unique=True)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    parent_moodle_category_id: Mapped[int | None] = mapped_column(BigInteger)
    path: Mapped[str | None] = mapped_column(Text)
    depth: Mapped[int | None] = mapped_column(Integer)
    sort_order: Mapped[int | None] = mapped_column(BigInteger)
    is_visible: Mapped[bool | None] = mapped_column(Boolean)
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CourseCatalog(Base):
    __tablename__ = "course_catalog"
    __table_args__ = (
        CheckConstraint("price IS NULL OR price >= 0", name="price_not_negative"),
        CheckConstraint("price IS NOT NULL OR currency IS NULL", name="currency_needs_price"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    moodle_course_id: Mapped[int] = mapped_column(BigInteger, nullable=False, unique=True)
    category_id: Mapped[int | None] = mapped_column(ForeignKey("course_category.id"), index=True)
    moodle_category_id: Mapped[int | None] = mapped_column(BigInteger)
    shortname: Mapped[str] = mapped_column(Text, nullable=False)
    fullname: Mapped[str] = mapped_column(Text, nullable=False)
    summary: Mapped[str | None] = mapped_column(Text)
    summary_format: Mapped[int | None] = mapped_column(Integer)
    id_number: Mapped[str | None] = mapped_column(Text)
    is_visible: Mapped[bool | None] = mapped_column(Boolean)
    start_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    price: Mapped[Decimal | None] = mapped_column(Numeric(18, 4))
    currency: Mapped[str | None] = mapped_column(String(3))
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # Unique when present (NULLs never collide on SQLite or PostgreSQL); always lower-case.
    email: Mapped[str | None] = mapped_column(String(320), unique=True)
    moodle_user_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    username: Mapped[str | None] = mapped_column(Text)
    first_name: Mapped[str | None] = mapped_column(Text)
    last_name: Mapped[str | None] = mapped_column(Text)
    id_number: Mapped[str | None] = mapped_column(Text)
    is_suspended: Mapped[bool | None] = mapped_column(Boolean)
    last_access_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class UserCourseEnrollment(Base):
    __tablename__ = "user_course_enrollment"
    __table_args__ = (
        UniqueConstraint("user_id", "course_id"),
        Index("ix_user_course_enrollment_course_id", "course_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False)
    course_id: Mapped[int] = mapped_column(ForeignKey("course_catalog.id"), nullable=False)
    moodle_user_id: Mapped[int | None] = mapped_column(BigInteger)
    moodle_course_id: Mapped[int | None] = mapped_column(BigInteger)
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False)
    roles: Mapped[str | None] = mapped_column(Text)
    last_access_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class IntegrationChangeLog(Base):
    """One row per stored row a sync changed, written in the sync's own transaction.

    `id` only grows: it is the cursor of a downstream consumer (`WHERE id > :cursor ORDER BY id`).
    Rows older than MOODLE_CHANGELOG_RETENTION_DAYS are pruned at the end of each sync.
    """

    __tablename__ = "integration_change_log"
    __table_args__ = (
        CheckConstraint(_in("kind", CHANGE_KINDS), name="kind_known"),
        Index("ix_integration_change_log_run_id", "run_id"),
        Index("ix_integration_change_log_target_id", "target", "id"),
    )

    # BigInteger on PostgreSQL (a busy site logs many rows); SQLite needs INTEGER for its rowid alias.
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    run_id: Mapped[int | None] = mapped_column(Integer)
    target: Mapped[str] = mapped_column(String(32), nullable=False)
    entity: Mapped[str] = mapped_column(String(32), nullable=False)
    moodle_key: Mapped[str] = mapped_column(Text, nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    changed_columns: Mapped[str | None] = mapped_column(Text)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


CONTRACT_TABLES = (
    "integration_sync_config",
    "integration_sync_run",
    "course_category",
    "course_catalog",
    "users",
    "user_course_enrollment",
)
