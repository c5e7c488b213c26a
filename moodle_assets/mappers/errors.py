"""Why a Moodle row was not mapped: rejected (malformed) or skipped (deliberately not synced)."""

from __future__ import annotations

# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


class RowRejected(ValueError):
    """A row that cannot be mapped.

    ``moodle_id`` is the row's Moodle id when it could be read (else ``None``);
    ``reason`` is a one-line human explanation, safe to log and to store.
    """

    def __init__(self, moodle_id: int | None, reason: str) -> None:
        super().__init__(f"row {moodle_id}: {reason}" if moodle_id is not None else f"row: {reason}")
        self.moodle_id = moodle_id
        self.reason = reason

    def __reduce__(self):  # keep pickling (Dagster, multiprocessing) working
        return (type(self), (self.moodle_id, self.reason))


class RowSkipped(RowRejected):
    """A valid row that is deliberately not synced; batch code counts it as skipped."""


class SiteCourseExcluded(RowSkipped):
    """The Moodle site course (id 1, format ``site``) is not a catalog course."""


class GuestUserExcluded(RowSkipped):
    """Moodle's guest account is not synced."""
