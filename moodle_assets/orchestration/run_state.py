"""Where a Dagster run is, for the sync history's ghost rules (`history.RunStateCheck`)."""

from __future__ import annotations

from dagster import DagsterInstance, DagsterRunStatus

from ..history import RunState, RunStateCheck

# NOT_STARTED is not "queued": a run whose creator died before submitting it (e.g. `sync`
# killed while loading) never starts, so its row is judged by the heartbeat like a running one.
_QUEUED = {DagsterRunStatus.QUEUED, DagsterRunStatus.STARTING, DagsterRunStatus.MANAGED}
_OVER = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


def run_state_checker(instance: DagsterInstance) -> RunStateCheck:
    """A `RunStateCheck` backed by the Dagster instance."""

    def check(dagster_run_id: str) -> str | None:
        run = instance.get_run_by_id(dagster_run_id)
        if run is None:
            # Not created yet (the CLI claims before execute_in_process creates its run) or
            # deleted: unknown, so the heartbeat decides.
            return None
        if run.status in _OVER:
            return RunState.OVER
        if run.status in _QUEUED:
            return RunState.QUEUED
        return RunState.RUNNING

    return check
