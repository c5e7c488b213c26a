"""Launch Dagster runs from the web process: claim the targets, then GraphQL `launchRun`.

1. `claim_targets` (trigger API or MANUAL) inserts one RUNNING history row per target; the
   partial unique index on RUNNING rows makes concurrent requests lose cleanly (SKIPPED).
2. One `launchRun` mutation, executed in-process by the webserver's own GraphQL server with the
   request's workspace context: the same public operation an external client would send to
   `/graphql`, so no Dagster internals are needed. The run carries `run_tags(...)`, whose
   `moodle/sync_run_ids` tells the assets which claimed rows they take.
3. The rows get the Dagster run id once the run exists.

If the launch fails, the claimed rows are closed FAILED with a short reason, so nothing is left
RUNNING.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request

from ..core.redaction import error_text, redact
from ..core.targets import CODE_LOCATION_NAME, LaunchOutcome, SyncTarget, SyncTrigger
from ..orchestration.launch import TargetOutcome, claim_targets, job_plan, run_tags
from ..orchestration.run_state import dead_run_reporter, run_state_checker
from .common import log

REPOSITORY_NAME = "__repository__"
MAX_REASON_CHARS = 600
_FRAME = re.compile(r'^\s*File ".*", line \d+')
_CARETS = re.compile(r"^\s*[\^~]+\s*$")

LAUNCH_RUN = """
mutation LaunchSyncRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PipelineNotFoundError { message }
    ... on RunConflict { message }
    ... on UnauthorizedError { message }
    ... on PresetNotFoundError { message }
    ... on ConflictingExecutionParamsError { message }
    ... on NoModeProvidedError { message }
  }
}
"""


class LaunchFailed(RuntimeError):
    """Dagster refused or failed to launch the run; the message says why (no secrets)."""


def short_error(text: str) -> str:
    """An error without Python stack frames (a user-code error from Dagster embeds them), capped."""
    lines, skip_next = [], False
    for line in (redact(text) or "").splitlines():
        if skip_next:
            skip_next = False
            continue
        if _FRAME.match(line):
            skip_next = True  # the source line that follows the frame
            continue
        if line.strip() in ("Stack Trace:", "") or _CARETS.match(line):
            continue
        lines.append(line.strip())
    joined = " ".join(lines)
    return joined if len(joined) <= MAX_REASON_CHARS else joined[: MAX_REASON_CHARS - 1] + "…"


def launch_run(webserver: Any, request: Request, job_name: str, *, tags: dict[str, str], asset_keys=None) -> str:
    """Launch `job_name` of our code location through GraphQL `launchRun`; return the run id."""
    selector: dict[str, Any] = {
        "repositoryLocationName": CODE_LOCATION_NAME,
        "repositoryName": REPOSITORY_NAME,
        "jobName": job_name,
    }
    if asset_keys:
        selector["assetSelection"] = [{"path": list(key.path)} for key in asset_keys]
    variables = {
        "executionParams": {
            "selector": selector,
            "runConfigData": {},
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
        }
    }
    response = webserver.graphql_execution_thread(
        request=request, query=LAUNCH_RUN, variables=variables, operation_name="LaunchSyncRun"
    )
    body = json.loads(bytes(response.body))
    if body.get("errors"):
        raise LaunchFailed("; ".join(str(e.get("message", e)) for e in body["errors"]))
    result = (body.get("data") or {}).get("launchRun") or {}
    if result.get("__typename") == "LaunchRunSuccess":
        return str(result["run"]["runId"])
    detail = result.get("message") or "; ".join(e.get("message", "") for e in result.get("errors", []))
    raise LaunchFailed(f"{result.get('__typename', 'no answer')}: {detail or 'no details'}")


def launch_targets(
    webserver: Any,
    request: Request,
    targets: Sequence[SyncTarget],
    *,
    trigger: SyncTrigger,
    force: bool = False,
) -> list[TargetOutcome]:
    """Claim `targets` and launch one Dagster run for those claimed; outcomes in target order.
    Blocking: call it from a worker thread."""
    history = webserver.history
    with webserver.request_context(request) as context:
        run_state = run_state_checker(context.instance)
        worker_gone = dead_run_reporter(context.instance)
    outcomes = claim_targets(history, run_state, targets, trigger=trigger, force=force, on_worker_gone=worker_gone)
    launched = [o for o in outcomes if o.outcome is LaunchOutcome.LAUNCHED]
    if not launched:
        return outcomes
    claims = {o.target.value: int(o.sync_run_id) for o in launched if o.sync_run_id is not None}
    job_name, selection = job_plan([o.target for o in launched])
    tags = run_tags([o.target for o in launched], trigger, force, claims)
    try:
        dagster_run_id = launch_run(webserver, request, job_name, tags=tags, asset_keys=selection)
    except Exception as exc:
        log.error("launching %s for %s failed: %s", job_name, ", ".join(claims), error_text(exc))
        reason = f"launch failed: {short_error(str(exc))}"
        history.fail_unstarted(claims.values(), reason)
        for o in launched:
            o.outcome, o.reason, o.dagster_run_id = LaunchOutcome.SKIPPED, reason, None
        return outcomes
    history.attach_dagster_run(claims.values(), dagster_run_id)
    for o in launched:
        o.dagster_run_id = dagster_run_id
    return outcomes
