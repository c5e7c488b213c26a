"""`moodle-integration sync`: run targets now, through Dagster, in this process.

The run is recorded in the Dagster instance (so it shows in the UI next to scheduled ones)
and executes in-process: no daemon is needed, and the exit code says how it went (`exit_codes.py`:
0 every target synced, 1 a sync failed, 2 usage/config, 75 a target was not synced because
another live sync holds it). Each target's outcome is one line; a failure adds its cause and
fix, a success what the token could not see. Dagster's own log (with tracebacks) goes to the
run's event log, and to the terminal only with `--verbose`.

This process runs the syncs it claims, so it holds their rows' liveness locks from the claim
on: if it is killed at any point, the next `sync` closes its rows at once ("worker lost") and
runs, instead of waiting for the heartbeat timeout.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from dagster import DagsterInstance

from ..core.redaction import error_text
from ..core.targets import LaunchOutcome, SyncStatus, SyncTarget, SyncTrigger
from ..history import SyncHistory
from ..orchestration.instance import export_for_children, prepare_dagster_home
from ..orchestration.launch import claim_targets, job_plan, new_run_id, run_tags
from ..orchestration.run_state import dead_run_reporter, run_state_checker
from ..settings import Settings
from ..store.db import engine_for
from ..store.migrate import upgrade
from . import exit_codes
from .failures import split_cause_fix

UPSTREAM_FAILED = "not run: upstream failed (a target it depends on failed in the same Dagster run)"
INTERRUPTED = "interrupted: the sync command was stopped before this target finished"


# Dagster's console logger only for --verbose; the event log keeps everything either way.
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def cli_sync(settings: Settings, targets: Sequence[SyncTarget], *, force: bool = False, verbose: bool = False) -> int:
    if not settings.moodle_url:
        print(
            "error: MOODLE_URL is not set. Point it at your Moodle site (and set MOODLE_TOKEN); "
            "the demo emulator is only started by `moodle-integration serve`.",
            file=sys.stderr,
        )
        return exit_codes.USAGE
    if not settings.moodle_token:
        print("error: MOODLE_TOKEN is not set (the web-service token of your Moodle site).", file=sys.stderr)
        return exit_codes.USAGE
    upgrade(settings.database_url)
    export_for_children(settings)
    prepare_dagster_home(settings.dagster_home, default_home=settings.data_dir / "dagster_home")
    history = SyncHistory(engine_for(settings.database_url), heartbeat_timeout=settings.heartbeat_timeout_seconds)
    from ..definitions import build_definitions

    defs = build_definitions(settings)
    with DagsterInstance.get() as instance:
        dagster_run_id = new_run_id()
        outcomes = claim_targets(
            history,
            run_state_checker(instance),
            targets,
            trigger=SyncTrigger.CLI,
            force=force,
            dagster_run_id=dagster_run_id,
            on_worker_gone=dead_run_reporter(instance),
            hold=True,
        )
        launched = [o for o in outcomes if o.outcome is LaunchOutcome.LAUNCHED]
        claims = {o.target.value: int(o.sync_run_id) for o in launched if o.sync_run_id is not None}
        left_open = UPSTREAM_FAILED
        try:
            # Another live sync holds these (a claim loses only to a RUNNING row that survived
            # the ghost check): not synced now, and the exit code says "try again later".
            busy = [o for o in outcomes if o.outcome is LaunchOutcome.SKIPPED]
            for o in busy:
                print(f"{o.target.value:<16} SKIPPED  {o.reason} (try again later)")
            if not launched:
                return exit_codes.BUSY if busy else exit_codes.OK
            job_name, selection = job_plan([o.target for o in launched])
            job = defs.resolve_job_def(job_name)
            try:
                result = job.execute_in_process(
                    instance=instance,
                    run_id=dagster_run_id,
                    tags=run_tags([o.target for o in launched], SyncTrigger.CLI, force, claims),
                    asset_selection=selection,
                    raise_on_error=False,
                    run_config=None if verbose else QUIET_RUN_CONFIG,
                )
            except KeyboardInterrupt:
                left_open = INTERRUPTED
                raise
            except BaseException as exc:
                left_open = f"the sync command failed before this target finished: {error_text(exc)}"
                raise
            history.close_dagster_run(dagster_run_id, error=UPSTREAM_FAILED)
            failed = False
            for o in launched:
                row = history.get(o.sync_run_id) if o.sync_run_id is not None else None
                failed |= row is None or row.status != SyncStatus.SUCCESS
                print(_summary(o.target.value, row))
            print(f"Dagster run {dagster_run_id}: {'SUCCESS' if result.success and not failed else 'FAILURE'}")
            if failed or not result.success:
                return exit_codes.FAILED
            return exit_codes.BUSY if busy else exit_codes.OK
        finally:
            if claims:
                history.close_dagster_run(dagster_run_id, error=left_open)
                history.release(claims.values())


def _summary(target: str, row) -> str:
    """One line per target; a failure adds its cause and fix, a warning what was not seen."""
    if row is None:
        return f"{target:<16} UNKNOWN"
    who = f"; as {row.token_label}" if row.token_label else ""
    if row.status != SyncStatus.SUCCESS:
        cause, fix = split_cause_fix(row.error or row.skip_reason or "")
        lines = [f"{target:<16} {row.status:<8} {cause}"]
        if fix:
            lines.append(f"{'':<26}fix: {fix}")
        return "\n".join(lines)
    queued = f" (queued {row.queued_seconds:.1f} s before)" if row.queued_seconds is not None else ""
    seconds = f"{row.duration_seconds:.1f}" if row.duration_seconds is not None else "?"
    text = (
        f"{target:<16} SUCCESS  {row.breakdown}; deactivated {row.rows_deactivated}, "
        f"unmatched {row.rows_unmatched}; {row.requests_made} requests in {seconds} s{queued}{who}"
    )
    for warning in (row.warning or "").splitlines():
        text += f"\n{'':<17}warning: {warning}"
    return text
