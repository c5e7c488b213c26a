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


# --- telling a person what is wrong with the app database --------------------------------------


def shown_url(url: str) -> str:
    """The URL as a person may see it: the password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(an unparsable DATABASE_URL)"


def _sqlite_reason(database: str) -> tuple[str, str]:
    path = Path(database).expanduser()
    directory = path.parent
    probe = directory
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not directory.exists():
        return (
            f"the directory {directory} does not exist and cannot be created ({probe} is not writable)",
            "create it, or point DATABASE_URL / MOODLE_INTEGRATION_DATA_DIR at a writable place",
        )
    import os

    if path.exists() and not os.access(path, os.W_OK):
        return f"the file {path} is read-only", "make it writable for this user, or use another DATABASE_URL"
    if not os.access(directory, os.W_OK):
        return (
            f"the directory {directory} is read-only (SQLite writes its journal beside the file)",
            "make it writable for this user, or point DATABASE_URL / MOODLE_INTEGRATION_DATA_DIR elsewhere",
        )
    return "", ""


def explain_database_error(url: str, exc: BaseException) -> tuple[str, str]:
    """(cause, fix) for an error reaching or writing the app database: the URL (password masked)
    or SQLite path, and why (unreachable, refused login, missing database, read-only, missing
    directory). Never the password."""
    parsed = None
    try:
        parsed = make_url(normalize_url(url))
    except Exception:
        pass
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if parsed is not None and parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        where = f"SQLite database {database}"
        if database and database != ":memory:":
            reason, fix = _sqlite_reason(database)
            if reason:
                return f"cannot write the {where}: {reason}", fix
        if "readonly" in text.replace(" ", "").lower() or "read-only" in text.lower():
            return f"the {where} is read-only ({text})", "make the file and its directory writable for this user"
        return f"the {where} failed: {text}", "check the path in DATABASE_URL / MOODLE_INTEGRATION_DATA_DIR"
    where = f"app database {shown_url(url)}"
    lowered = text.lower()
    if "could not translate host name" in lowered or "name or service not known" in lowered:
        return f"the {where} is unreachable: its host name does not resolve", "check the host in DATABASE_URL"
    if "connection refused" in lowered or "could not connect" in lowered or "timeout expired" in lowered:
        return (
            f"the {where} is unreachable: {text}",
            "check that the database server runs and accepts connections from this machine (host, port, firewall)",
        )
    if "password authentication failed" in lowered or "authentication failed" in lowered:
        return f"the {where} refused the login: {text}", "check the user and password in DATABASE_URL"
    if "does not exist" in lowered and "database" in lowered:
        return f"the {where} does not exist: {text}", "create the database (CREATE DATABASE ...) or fix its name"
    if "read-only" in lowered or "permission denied" in lowered:
        return f"the {where} cannot be written: {text}", "grant this user write access, or use another database"
    return f"the {where} failed: {text}", "check DATABASE_URL and the database server's log"
