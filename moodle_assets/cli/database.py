"""Which app database a reading command reads, and refusing to create one that is not there.

`runs`, `config show` and `changes` only read: pointed at a wrong DATABASE_URL (or run from
another directory, since relative paths are taken from the working directory) they would
otherwise create an empty database and report "nothing", which reads like the truth. They
print the database they read (password masked) and refuse a missing one; `db upgrade`, `serve`
and `sync` create it.
"""

from __future__ import annotations

import sys
from typing import TextIO

from ..settings import Settings
from ..store.db import shown_url
from ..store.migrate import existing_revision, upgrade
from . import exit_codes


def describe_database(settings: Settings) -> str:
    return f"database: {shown_url(settings.database_url)}"


def open_existing(settings: Settings, *, header: TextIO | None = None) -> int | None:
    """Print which database is read (to `header`, default stdout); bring an existing one's schema
    up to date. Returns an exit code when the database does not exist or has no schema (the
    message on stderr), else None."""
    print(describe_database(settings), file=header or sys.stdout)
    exists, revision = existing_revision(settings.database_url)
    if not exists or revision is None:
        what = "does not exist" if not exists else "has no tables (no migration applied)"
        print(
            f"error: the app database {shown_url(settings.database_url)} {what}; nothing to read.\n"
            "fix: point DATABASE_URL (or MOODLE_INTEGRATION_DATA_DIR) at the database your syncs write (relative "
            "paths are taken from the current directory), or create it with `moodle-integration db upgrade`",
            file=sys.stderr,
        )
        return exit_codes.USAGE
    upgrade(settings.database_url)
    return None
