"""Failures for people: what went wrong and what to do, in one or two lines, no traceback.

The CLI catches every error at its boundary (``main``) and prints it here; ``--verbose`` adds
the Python traceback (a Dagster run's own traceback stays in its event log either way).
"""

from __future__ import annotations

import re
import sqlite3
import sys
import traceback

from sqlalchemy.exc import SQLAlchemyError

from resources.moodle_errors import MoodleError

from ..core.redaction import redact
from ..store.db import explain_database_error

# "SomeError: " at the start of a stored error text (error_text() names the class).
_CLASS_PREFIX = re.compile(r"^[A-Z][A-Za-z]*(Error|Exception|Refused|Failure): ")


def split_cause_fix(text: str) -> tuple[str, str | None]:
    """A stored error ("Moodle fn: what happened [codes] — what to do") as (cause, fix)."""
    text = _CLASS_PREFIX.sub("", text.strip(), count=1)
    if " — " in text:
        cause, fix = text.split(" — ", 1)
        return cause.strip(), fix.strip()
    return text, None


def print_failure(cause: str, fix: str | None, *, prefix: str = "error: ", indent: str = "  ") -> None:
    print(f"{prefix}{redact(cause)}", file=sys.stderr)
    if fix:
        print(f"{indent}fix: {redact(fix)}", file=sys.stderr)


def report_exception(exc: BaseException, *, database_url: str | None, verbose: bool) -> int:
    """Print `exc` for a person (its traceback too when `verbose`); return the exit code (1)."""
    if verbose:
        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, MoodleError):
        print_failure(exc.message if not exc.wsfunction else f"Moodle {exc.wsfunction}: {exc.message}", exc.hint)
    elif isinstance(exc, (SQLAlchemyError, sqlite3.Error)) or type(exc).__module__.startswith("psycopg2"):
        print_failure(*explain_database_error(database_url or "", exc))
    elif isinstance(exc, PermissionError) or (isinstance(exc, OSError) and exc.filename):
        where = exc.filename or "a file"
        print_failure(
            f"cannot write {where}: {exc.strerror or exc}",
            "make it writable for this user, or set MOODLE_INTEGRATION_DATA_DIR to a writable directory",
        )
    else:
        print_failure(*split_cause_fix(f"{type(exc).__name__}: {exc}"))
    if not verbose:
        print("  (run with --verbose for the Python traceback)", file=sys.stderr)
    return 1
