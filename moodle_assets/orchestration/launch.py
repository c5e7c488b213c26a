"""Starting syncs from outside Dagster's own UI: claim first, then launch one run.

Every front door (CLI, HTTP trigger, admin page) claims the targets in the sync history before
it launches a Dagster run, so concurrent requests resolve to exactly one RUNNING row per target
(the rest SKIPPED), and the claimed row ids travel to the assets in a run tag. Runs launched
without a claim (the schedule sensor, Dagster's launchpad, GraphQL) are claimed by the asset
itself when it starts.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from dagster import AssetKey

from ..core.targets import (
    SYNC_ALL_JOB_NAME,
    TAG_FORCE,
    TAG_SYNC_RUN_IDS,
    TAG_TARGET,
    TAG_TRIGGER,
    TARGET_ORDER,
    TARGET_SPECS,
    LaunchOutcome,
    SyncTarget,
    SyncTrigger,
)
from ..history import Holder, RunStateCheck, SyncHistory, WorkerGone


@dataclass
class TargetOutcome:
    target: SyncTarget
    outcome: LaunchOutcome
    reason: str | None
    sync_run_id: int | None
    dagster_run_id: str | None = None
    # SKIPPED because another live sync holds the target (try again later): which one.
    held_by: Holder | None = None

    @property
    def busy(self) -> bool:
        return self.outcome is LaunchOutcome.SKIPPED and self.held_by is not None

    def as_json(self) -> dict:
        return {
            "target": self.target.value,
            "outcome": self.outcome.value,
            "reason": self.reason,
            "sync_run_id": self.sync_run_id,
            "dagster_run_id": self.dagster_run_id,
            "held_by": self.held_by.as_json() if self.held_by is not None else None,
        }


def ordered(targets: Sequence[SyncTarget]) -> list[SyncTarget]:
    wanted = set(targets)
    return [t for t in TARGET_ORDER if t in wanted]


def job_plan(targets: Sequence[SyncTarget]) -> tuple[str, list[AssetKey] | None]:
    """One target → its own job; several → `sync_all` restricted to them."""
    targets = ordered(targets)
    if len(targets) == 1:
        return TARGET_SPECS[targets[0]].job_name, None
    keys = [AssetKey(TARGET_SPECS[t].asset_name) for t in targets]
    return SYNC_ALL_JOB_NAME, (None if len(targets) == len(TARGET_ORDER) else keys)


def run_tags(
    targets: Sequence[SyncTarget], trigger: SyncTrigger, force: bool, claims: dict[str, int]
) -> dict[str, str]:
    return {
        TAG_TARGET: ",".join(t.value for t in ordered(targets)),
        TAG_TRIGGER: trigger.value,
        TAG_FORCE: "true" if force else "false",
        TAG_SYNC_RUN_IDS: json.dumps(claims, sort_keys=True),
    }


def claimed_run_ids(tags: dict[str, str]) -> dict[str, int]:
    """The `{target: sync run id}` a front door put in the run's tags (empty when none)."""
    raw = tags.get(TAG_SYNC_RUN_IDS)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
        return {str(k): int(v) for k, v in value.items()}
    except (ValueError, TypeError, AttributeError):
        return {}


def claim_targets(
    history: SyncHistory,
    run_state: RunStateCheck,
    targets: Sequence[SyncTarget],
    *,
    trigger: SyncTrigger,
    force: bool,
    dagster_run_id: str | None = None,
    on_worker_gone: WorkerGone | None = None,
    hold: bool = False,
) -> list[TargetOutcome]:
    """Claim each target (see `SyncHistory.claim`; `hold`: this process runs the syncs itself)."""
    outcomes = []
    for target in ordered(targets):
        claim = history.claim(
            target,
            trigger,
            force=force,
            dagster_run_id=dagster_run_id,
            run_state=run_state,
            on_worker_gone=on_worker_gone,
            hold=hold,
        )
        outcomes.append(
            TargetOutcome(
                target,
                LaunchOutcome.LAUNCHED if claim.started else LaunchOutcome.SKIPPED,
                claim.reason,
                claim.run_id,
                dagster_run_id if claim.started else None,
                held_by=claim.holder,
            )
        )
    return outcomes


def new_run_id() -> str:
    return str(uuid.uuid4())
