"""Engines and transactions for the app database (SQLite or PostgreSQL)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, Result, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

# SQLite waits this long for another process's write lock before giving up.
SQLITE_BUSY_TIMEOUT_MS = 30_000


def normalize_url(url: str) -> str:
    """Pin the PostgreSQL driver to psycopg2.

    SQLAlchemy 2.1 maps a bare `postgresql://` to psycopg 3, which is not installed (and which
    breaks dagster-postgres); `postgres://` (Heroku style) is accepted too.
    """
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed.render_as_string(hide_password=False)


def create_app_engine(url: str, *, pooled: bool = True) -> Engine:
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            poolclass=NullPool if not pooled else None,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    engine = create_engine(url, pool_pre_ping=True, poolclass=NullPool if not pooled else None)
    event.listen(engine, "do_connect", _postgres_application_name)
    return engine


def _postgres_application_name(_dialect, _record, _cargs, cparams) -> None:
    # Which process a session belongs to, for whoever reads pg_stat_activity / pg_locks.
    cparams.setdefault("application_name", f"moodle-integration [{os.getpid()}]")


def _sqlite_on_connect(dbapi_connection, _record) -> None:
    # Let SQLAlchemy, not pysqlite, decide when a transaction begins (BEGIN IMMEDIATE below).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_on_begin(connection) -> None:
    # Take the write lock up front: a transaction that later upgrades from a read lock can
    # deadlock against another writer and fail with "database is locked" immediately.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE/DELETE statement matched (a `CursorResult`'s `rowcount`)."""
    return int(cast("CursorResult[Any]", result).rowcount)


@lru_cache(maxsize=16)
def engine_for(url: str) -> Engine:
    """One engine per URL per process."""
    return create_app_engine(url)


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on any error."""
    factory = sessionmaker(engine, expire_on_commit=False)
    with factory() as session, session.begin():
        yield session
