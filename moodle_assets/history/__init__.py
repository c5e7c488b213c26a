"""The sync history: who synced what, when, how it went. `runs.SyncHistory` is its only writer."""

from .runs import Claim, Holder, LostOwnership, Ownership, RunRow, RunState, RunStateCheck, SyncHistory, WorkerGone

__all__ = [
    "Claim",
    "Holder",
    "LostOwnership",
    "Ownership",
    "RunRow",
    "RunState",
    "RunStateCheck",
    "SyncHistory",
    "WorkerGone",
]
