"""Starting syncs from outside Dagster's own UI: claim first, then launch.

Every front door (CLI, HTTP trigger, admin page) claims the target in the sync history
before it launches a Dagster run, so concurrent requests resolve to exactly one RUNNING row
per target (the rest SKIPPED), and the claimed row ids travel to the assets in a run tag.
Runs launched without a claim (the sensor, Dagster's launchpad, GraphQL) are claimed by the
asset itself when it starts.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from dagster import AssetKey, DagsterInstance
from sqlalchemy import Engine

from .dagster_runs import run_state_checker
from .store import sync_runs
from .targets import (
    SYNC_ALL_JOB_NAME,
    TAG_FORCE,
    TAG_SYNC_RUN_IDS,
    TAG_TARGET,
    TAG_TRIGGER,
    TARGET_SPECS,
    SyncTarget,
)

# Dependency order: a run of several targets syncs the catalog and users before enrollments.
TARGET_ORDER = (SyncTarget.COURSE_CATALOG, SyncTarget.USER_DIRECTORY, SyncTarget.ENROLLMENTS)


@dataclass
class TargetOutcome:
    target: SyncTarget
    outcome: str  # LAUNCHED | SKIPPED
    reason: str | None
    sync_run_id: int | None
    dagster_run_id: str | None = None

    def as_json(self) -> dict:
        return {
            "target": self.target.value,
            "outcome": self.outcome,
            "reason": self.reason,
            "sync_run_id": self.sync_run_id,
            "dagster_run_id": self.dagster_run_id,
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


def run_tags(targets: Sequence[SyncTarget], trigger: str, force: bool, claims: dict[str, int]) -> dict[str, str]:
    return {
        TAG_TARGET: ",".join(t.value for t in ordered(targets)),
        TAG_TRIGGER: trigger,
        TAG_FORCE: "true" if force else "false",
        TAG_SYNC_RUN_IDS: json.dumps(claims, sort_keys=True),
    }


def claim_targets(
    engine: Engine,
    instance: DagsterInstance,
    targets: Sequence[SyncTarget],
    *,
    trigger: str,
    force: bool,
    dagster_run_id: str | None = None,
) -> list[TargetOutcome]:
    checker = run_state_checker(instance)
    outcomes = []
    for target in ordered(targets):
        claim = sync_runs.claim_run(
            engine, target.value, trigger, force=force, dagster_run_id=dagster_run_id, run_state=checker
        )
        outcomes.append(
            TargetOutcome(target, "LAUNCHED" if claim.started else "SKIPPED", claim.reason, claim.run_id, dagster_run_id if claim.started else None)
        )
    return outcomes


def close_unfinished(engine: Engine, dagster_run_id: str, reason: str) -> list[int]:
    return sync_runs.close_runs_of_dagster_run(engine, dagster_run_id, error=reason)


def new_run_id() -> str:
    return str(uuid.uuid4())
