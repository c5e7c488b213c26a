"""`moodle-integration changes`: what the syncs changed, from the change log."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from ..store import changelog
from ..store.db import transaction

_RELATIVE = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$", re.IGNORECASE)
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, *, now: datetime) -> datetime:
    """`24h`, `7d`, `30m`, `2w` (before `now`) or an ISO time (UTC when it names no zone)."""
    match = _RELATIVE.match(text)
    if match:
        return now - timedelta(**{_UNITS[match.group(2).lower()]: int(match.group(1))})
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--since {text!r}: give an ISO time (2026-12-01 or 2026-12-01T08:00:00Z) or a relative one (24h, 7d)"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _row_json(row) -> dict:
    return {
        "id": row.id,
        "run_id": row.run_id,
        "target": row.target,
        "entity": row.entity,
        "moodle_key": row.moodle_key,
        "kind": row.kind,
        "changed_columns": changelog.columns_of(row),
        "changed_at": row.changed_at.isoformat(),
    }


def print_changes(engine: Engine, where: changelog.ChangeFilter, *, limit: int, as_json: bool, database: str) -> int:
    with transaction(engine) as session:
        total = changelog.count_changes(session, where)
        rows = changelog.latest_changes(session, where, limit=limit)
    if as_json:
        print(json.dumps({"database": database, "total": total, "changes": [_row_json(r) for r in rows]}, indent=2))
        return 0
    print(f"{'CHANGED AT':<21} {'RUN':>5} {'TARGET':<16} {'ENTITY':<13} {'KEY':<24} {'KIND':<12} COLUMNS")
    for r in rows:
        run = str(r.run_id) if r.run_id is not None else "-"
        print(
            f"{r.changed_at.strftime('%Y-%m-%d %H:%M:%SZ'):<21} {run:>5} {r.target:<16} {r.entity:<13} "
            f"{r.moodle_key:<24} {r.kind:<12} {', '.join(changelog.columns_of(r)) or '-'}"
        )
    if not rows:
        print("(no changes recorded for this selection)")
    elif total > len(rows):
        print(f"(the last {len(rows)} of {total} changes; --limit shows more)")
    return 0
