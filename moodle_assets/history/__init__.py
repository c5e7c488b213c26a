"""The sync history: who synced what, when, how it went. `runs.SyncHistory` is its only writer."""

from .runs import Claim, Ownership, RunRow, RunState, RunStateCheck, SyncHistory

__all__ = ["Claim", "Ownership", "RunRow", "RunState", "RunStateCheck", "SyncHistory"]
