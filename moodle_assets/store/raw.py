"""Rows as the database driver takes and returns them: bulk paths without SQLAlchemy's per-row
type processing (at 100k rows it was most of a sync's local time)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session


class RawValues:
    """Python values as the driver stores and returns them (no per-row SQLAlchemy type processing).

    SQLite keeps booleans as 0/1 and timestamps as naive-UTC text in SQLAlchemy's own format
    (``YYYY-MM-DD HH:MM:SS.ffffff``, what ``UTCDateTime`` + the SQLite ``DATETIME`` type write);
    PostgreSQL (psycopg2) takes and returns bools and aware datetimes. A timestamp's *stamp* is
    what staging keeps and diffs compare: the stored text on SQLite, epoch seconds on PostgreSQL.
    Values converted here compare equal to the stored ones exactly when the typed values would.
    """

    def __init__(self, bind: Session | Engine):
        dialect = bind.get_bind().dialect if isinstance(bind, Session) else bind.dialect
        self.sqlite = dialect.name == "sqlite"

    def ts(self, value: datetime | None) -> Any:
        """A datetime as `insert_raw` takes it (SQLite: the stored text; PostgreSQL: ISO 8601)."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to a UTC column; attach a time zone")
        if not self.sqlite:
            return value.isoformat()  # timestamptz text: what COPY sends anyway
        if value.tzinfo is not UTC:
            value = value.astimezone(UTC)
        text = value.replace(tzinfo=None).isoformat(" ")
        return text if value.microsecond else text + ".000000"

    def stamp(self, value: datetime | None) -> Any:
        if value is None:
            return None
        return self.ts(value) if self.sqlite else value.timestamp()

    def stored_stamp(self, stored: Any) -> Any:
        if stored is None or self.sqlite:
            return stored
        return stored.timestamp()

    def stamp_param(self, stamp: Any) -> Any:
        if stamp is None or self.sqlite:
            return stamp
        return datetime.fromtimestamp(stamp, UTC).isoformat()

    def stamp_value(self, stamp: Any) -> datetime | None:
        if stamp is None:
            return None
        if self.sqlite:
            return datetime.fromisoformat(stamp).replace(tzinfo=UTC)
        return datetime.fromtimestamp(stamp, UTC)

    def stored_ts(self, stored: Any) -> datetime | None:
        """A stored timestamp as the typed column (`UTCDateTime`) reads it: an aware UTC datetime."""
        if stored is None:
            return None
        if self.sqlite:
            return datetime.fromisoformat(stored).replace(tzinfo=UTC)
        return stored.astimezone(UTC)

    def flag(self, value: bool) -> Any:
        return int(value) if self.sqlite else bool(value)

    def stage_enrollment(self, r: Any) -> tuple[Any, ...]:
        """An EnrollmentRecord as a compact staged tuple (see `apply_course_enrollments`)."""
        withheld = r.withheld
        return (
            r.moodle_user_id,
            r.moodle_course_id,
            self.flag(r.is_active),
            r.roles,
            None if "last_access_at" in withheld else self.stamp(r.last_access_at),
            ",".join(sorted(withheld)) or None,
        )


def insert_raw(session: Session, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
    """Bulk INSERT of driver-ready tuples in the session's transaction: one ``executemany`` on
    SQLite, ``COPY ... FROM STDIN`` (text format) on PostgreSQL: execute_values spent more time
    in psycopg2's per-row mogrify and the server's per-statement parse than COPY takes in all."""
    if not rows:
        return
    connection = session.connection()
    names = ", ".join(columns)
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql(
            f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(columns))})", list(rows)
        )
        return
    text = "".join("\t".join(map(_copy_value, row)) + "\n" for row in rows)
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.copy_expert(f"COPY {table} ({names}) FROM STDIN", io.StringIO(text))
    finally:
        cursor.close()


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_value(value: Any) -> str:
    """One value in PostgreSQL's COPY text format (NULL is \\N; backslash, tab, CR, LF escaped)."""
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, str):
        # str.translate with a table walks every character in Python-level lookups: only the
        # rare value that holds a special character pays for it (halves COPY text building).
        if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
            return value.translate(_COPY_ESCAPES)
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
