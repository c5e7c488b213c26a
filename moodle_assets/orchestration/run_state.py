"""Where a Dagster run is, for the sync history's ghost rules (`history.RunStateCheck`), and ending the
Dagster run of a worker the history found dead (`history.WorkerGone`)."""

from __future__ import annotations

from dagster import DagsterInstance, DagsterRunStatus

from ..history import RunState, RunStateCheck, WorkerGone

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


# A run in these states still counts as in flight (e.g. for the queue's per-target limit).
_IN_FLIGHT = {DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED}


def dead_run_reporter(instance: DagsterInstance) -> WorkerGone:
    """A `WorkerGone` that marks the Dagster run of a dead or unresponsive worker FAILED.

    The history closed the worker's row (its liveness lock was free, or it stopped beating for
    the whole timeout); without this the run would look STARTED until run monitoring notices
    (or forever, for a killed `sync` command or a stopped process), and the run queue would
    hold the next run of the same targets behind it. A worker that was only stopped and
    resumes finds its row closed and writes nothing (fencing)."""

    def report(dagster_run_id: str, reason: str) -> None:
        run = instance.get_run_by_id(dagster_run_id)
        if run is not None and run.status in _IN_FLIGHT:
            instance.report_run_failed(run, message=f"moodle-integration: {reason}")

    return report
