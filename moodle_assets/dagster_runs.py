"""Small bridges between Dagster's instance and the sync history."""
from __future__ import annotations

from dagster import DagsterInstance, DagsterRunStatus

from .store.sync_runs import OVER, QUEUED, RUNNING

# NOT_STARTED is not "queued": a run whose creator died before submitting it never starts,
# so its claim is judged by the heartbeat like a running one.
_QUEUED = {DagsterRunStatus.QUEUED, DagsterRunStatus.STARTING, DagsterRunStatus.MANAGED}
_OVER = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


def run_state_checker(instance: DagsterInstance):
    """A `RunStateCheck` backed by the Dagster instance."""

    def check(dagster_run_id: str) -> str | None:
        run = instance.get_run_by_id(dagster_run_id)
        if run is None:
            # Not created yet (the CLI claims before execute_in_process creates its run) or
            # deleted: unknown, so the heartbeat decides.
            return None
        if run.status in _OVER:
            return OVER
        if run.status in _QUEUED:
            return QUEUED
        return RUNNING

    return check
