"""The one clock: timezone-aware UTC "now" (naive datetimes are refused by the store)."""

from __future__ import annotations

from datetime import datetime, timezone


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
