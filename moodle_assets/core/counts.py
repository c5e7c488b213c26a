"""What one sync of a target did, in numbers (the history row's counters and Dagster metadata).

Every fetched row ends in exactly one of five places, so the numbers add up:

    fetched = inserted + updated + unchanged + rejected + skipped

- `rejected`: the row could not be mapped (bad data), with a reason per row;
- `skipped`: the row is left out on purpose (Moodle's site course, the guest user, an
  enrollment of a user not in the user directory yet: `unmatched` says how many of those).
`deactivated` counts stored rows Moodle no longer lists: rows that were not fetched, so it is
outside the sum. Request numbers describe the traffic, not the rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class RunCounts:
    fetched: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deactivated: int = 0
    rejected: int = 0
    skipped: int = 0
    unmatched: int = 0
    requests: int = 0
    retries: int = 0
    responses_429: int = 0
    backoff_seconds: float = 0.0

    def add(self, other: RunCounts) -> RunCounts:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)
        return self

    @property
    def accounted(self) -> int:
        """Fetched rows accounted for: equals `fetched` when the numbers add up."""
        return accounted(self.inserted, self.updated, self.unchanged, self.rejected, self.skipped)


def accounted(inserted: int, updated: int, unchanged: int, rejected: int, skipped: int) -> int:
    return inserted + updated + unchanged + rejected + skipped


def breakdown(fetched: int, inserted: int, updated: int, unchanged: int, rejected: int, skipped: int) -> str:
    """The one wording of the sum, for the CLI, the admin page and Dagster metadata:
    ``fetched 30 = inserted 5 + updated 1 + unchanged 20 + rejected 1 + skipped 3``."""
    return (
        f"fetched {fetched} = inserted {inserted} + updated {updated} + unchanged {unchanged} "
        f"+ rejected {rejected} + skipped {skipped}"
    )
