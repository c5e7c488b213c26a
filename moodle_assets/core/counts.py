"""What one sync of a target did, in numbers (the history row's counters and Dagster metadata)."""

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
    unmatched: int = 0
    requests: int = 0
    retries: int = 0
    responses_429: int = 0
    backoff_seconds: float = 0.0

    def add(self, other: RunCounts) -> RunCounts:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)
        return self
