"""The one clock: timezone-aware UTC "now" (naive datetimes are refused by the store)."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)
