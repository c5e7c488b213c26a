"""`moodle-integration sync`: run targets now, through Dagster, in this process.

The run is recorded in the Dagster instance (so it shows in the UI next to scheduled ones)
and executes in-process: no daemon is needed, and the exit code says how it went.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence

from dagster import DagsterInstance

from .dagster_home import prepare_dagster_home
from .launch import claim_targets, close_unfinished, job_plan, new_run_id, run_tags
from .settings import Settings
from .store import sync_runs
from .store.db import engine_for
from .store.migrate import upgrade
from .targets import SyncTarget, SyncTrigger


def cli_sync(settings: Settings, targets: Sequence[SyncTarget], *, force: bool = False) -> int:
    if not settings.moodle_url:
        print("error: MOODLE_URL is not set. Point it at your Moodle site (and set MOODLE_TOKEN); "
              "the demo emulator is only started by `moodle-integration serve`.", file=sys.stderr)
        return 2
    if not settings.moodle_token:
        print("error: MOODLE_TOKEN is not set (the web-service token of your Moodle site).", file=sys.stderr)
        return 2
    upgrade(settings.database_url)
    prepare_dagster_home()
    engine = engine_for(settings.database_url)
    from .definitions import defs

    with DagsterInstance.get() as instance:
        dagster_run_id = new_run_id()
        outcomes = claim_targets(
            engine, instance, targets, trigger=SyncTrigger.CLI.value, force=force, dagster_run_id=dagster_run_id
        )
        for o in outcomes:
            if o.outcome == "SKIPPED":
                print(f"{o.target.value:<16} SKIPPED  {o.reason}")
        launched = [o for o in outcomes if o.outcome == "LAUNCHED"]
        if not launched:
            return 0
        claims = {o.target.value: o.sync_run_id for o in launched}
        job_name, selection = job_plan([o.target for o in launched])
        job = defs.resolve_job_def(job_name)
        result = job.execute_in_process(
            instance=instance,
            run_id=dagster_run_id,
            tags=run_tags([o.target for o in launched], SyncTrigger.CLI.value, force, claims),
            asset_selection=selection,
            raise_on_error=False,
        )
        close_unfinished(engine, dagster_run_id, "not run: an upstream target failed in the same Dagster run")
        failed = False
        for o in launched:
            row = sync_runs.get_run(engine, o.sync_run_id)
            failed |= row is None or row.status != "SUCCESS"
            print(_summary(o.target.value, row))
        print(f"Dagster run {dagster_run_id}: {'SUCCESS' if result.success and not failed else 'FAILURE'}")
        return 1 if failed or not result.success else 0


def _summary(target: str, row) -> str:
    if row is None:
        return f"{target:<16} UNKNOWN"
    if row.status != "SUCCESS":
        return f"{target:<16} {row.status:<8} {row.error or row.skip_reason or ''}"
    return (
        f"{target:<16} SUCCESS  fetched {row.rows_fetched}, inserted {row.rows_inserted}, updated {row.rows_updated}, "
        f"unchanged {row.rows_unchanged}, deactivated {row.rows_deactivated}, rejected {row.rows_rejected}, "
        f"unmatched {row.rows_unmatched}; {row.requests_made} requests in {row.duration_seconds:.1f} s"
    )
