"""Launch Dagster runs from the web process: claim the targets, then submit one run.

How (dagster 1.13.27, pinned; `tests/web/test_smoke.py` covers it): the same steps as the
GraphQL `launchRun` mutation, called directly with the request's `WorkspaceRequestContext`:

1. `claim_targets` (trigger API or MANUAL) inserts one RUNNING history row per target; the
   partial unique index on RUNNING rows makes concurrent requests lose cleanly (SKIPPED).
   The claim carries no Dagster run id yet: a row pointing at a run that does not exist
   would look like a ghost ("Dagster run gone") to a concurrent claimer, which would close it.
2. The remote job comes from the code location (`get_job`, asset subset for several targets),
   and `dagster_graphql`'s `create_valid_pipeline_run` creates the run (NOT_STARTED) with our
   pre-generated run id and the `run_tags(...)` that tell the assets which rows they own.
   We use the internal function rather than the GraphQL mutation because the mutation's
   `ExecutionMetadata` input has no `runId`, and we want the id on the rows before the run can start.
3. The rows get the run id (`attach_dagster_run`), then `instance.submit_run` hands the run to
   the instance's run coordinator (queued for the daemon under `serve`).

If any step fails, the claimed rows are closed FAILED with the reason, and a run that was
created but not submitted is marked failed in Dagster, so nothing is left RUNNING.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

from dagster._core.definitions.selector import JobSubsetSelector
from dagster._core.workspace.context import BaseWorkspaceRequestContext
from sqlalchemy import Engine

from ..launch import TargetOutcome, claim_targets, job_plan, new_run_id, run_tags
from ..redaction import error_text
from ..store import sync_runs
from ..targets import CODE_LOCATION_NAME, SyncTarget
from .common import log

REPOSITORY_NAME = "__repository__"
MAX_REASON_CHARS = 600
_FRAME = re.compile(r'^\s*File ".*", line \d+')
_CARETS = re.compile(r"^\s*[\^~]+\s*$")


def short_error(exc: BaseException) -> str:
    """The error without Python stack frames (a user-code error from Dagster embeds them), capped."""
    lines, skip_next = [], False
    for line in error_text(exc).splitlines():
        if skip_next:
            skip_next = False
            continue
        if _FRAME.match(line):
            skip_next = True  # the source line that follows the frame
            continue
        if line.strip() in ("Stack Trace:", "") or _CARETS.match(line):
            continue
        lines.append(line.strip())
    text = " ".join(lines)
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"


def submit_job_run(
    context: BaseWorkspaceRequestContext,
    job_name: str,
    *,
    tags: dict[str, str],
    asset_selection=None,
    run_id: str | None = None,
    before_submit=None,
) -> str:
    """Create and submit a run of `job_name` in our code location; return its run id."""
    from dagster_graphql.implementation.execution.run_lifecycle import create_valid_pipeline_run
    from dagster_graphql.implementation.utils import ExecutionMetadata, ExecutionParams

    selector = JobSubsetSelector(
        location_name=CODE_LOCATION_NAME,
        repository_name=REPOSITORY_NAME,
        job_name=job_name,
        op_selection=None,
        asset_selection=asset_selection,
    )
    if not context.has_code_location(CODE_LOCATION_NAME):
        error = context.get_code_location_error(CODE_LOCATION_NAME)
        raise RuntimeError(f"code location {CODE_LOCATION_NAME} is not loaded" + (f": {error.message}" if error else ""))
    location = context.get_code_location(CODE_LOCATION_NAME)
    remote_job = location.get_job(selector)
    params = ExecutionParams(
        selector=selector,
        run_config={},
        mode=None,
        execution_metadata=ExecutionMetadata(run_id=run_id or new_run_id(), tags=dict(tags)),
        step_keys=None,
    )
    run = create_valid_pipeline_run(context, remote_job, params)
    try:
        if before_submit is not None:
            before_submit(run.run_id)
        context.instance.submit_run(run.run_id, workspace=context)
    except Exception:
        try:
            context.instance.report_run_failed(context.instance.get_run_by_id(run.run_id) or run)
        except Exception:
            pass
        raise
    return run.run_id


def launch_targets(
    context: BaseWorkspaceRequestContext,
    engine: Engine,
    targets: Sequence[SyncTarget],
    *,
    trigger: str,
    force: bool = False,
) -> list[TargetOutcome]:
    """Claim `targets` and launch one Dagster run for those claimed; outcomes in target order."""
    outcomes = claim_targets(engine, context.instance, targets, trigger=trigger, force=force, dagster_run_id=None)
    launched = [o for o in outcomes if o.outcome == "LAUNCHED"]
    if not launched:
        return outcomes
    claims = {o.target.value: o.sync_run_id for o in launched}
    job_name, selection = job_plan([o.target for o in launched])
    tags = run_tags([o.target for o in launched], trigger, force, claims)
    dagster_run_id = new_run_id()

    def attach(run_id: str) -> None:
        for o in launched:
            sync_runs.attach_dagster_run(engine, o.sync_run_id, run_id)

    try:
        submit_job_run(context, job_name, tags=tags, asset_selection=selection, run_id=dagster_run_id, before_submit=attach)
    except Exception as exc:
        log.error("launching %s for %s failed: %s", job_name, ", ".join(claims), error_text(exc))
        reason = f"launch failed: {short_error(exc)}"
        for o in launched:
            sync_runs.finish_run(engine, o.sync_run_id, status="FAILED", error=reason)
            o.outcome, o.reason, o.dagster_run_id = "SKIPPED", reason, None
        return outcomes
    for o in launched:
        o.dagster_run_id = dagster_run_id
    return outcomes
