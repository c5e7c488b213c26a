"""The job definitions, built once: the code location and the sensors share these objects.

(Dagster refuses two job definitions of the same name, even equal ones.)
"""

from __future__ import annotations

from typing import Any

from dagster import AssetSelection, define_asset_job, in_process_executor

from ..core.targets import SYNC_ALL_JOB_NAME, TAG_TARGET, TARGET_SPECS, SyncTarget

# Steps run inside the run worker: a sync is I/O-bound and a step subprocess per target
# only adds seconds of Python start-up. The console shows INFO and up, not every event.
JOB_DEFAULTS: dict[str, Any] = {
    "executor_def": in_process_executor,
    "config": {"loggers": {"console": {"config": {"log_level": "INFO"}}}},
}

TARGET_JOBS = {
    spec.target: define_asset_job(
        spec.job_name,
        selection=AssetSelection.assets(spec.asset_name),
        description=spec.description,
        tags={TAG_TARGET: spec.target.value},
        **JOB_DEFAULTS,
    )
    for spec in TARGET_SPECS.values()
}

SYNC_ALL_JOB = define_asset_job(
    SYNC_ALL_JOB_NAME,
    selection=AssetSelection.assets(*[s.asset_name for s in TARGET_SPECS.values()]),
    description="Every target, in dependency order (catalog and users, then enrollments).",
    **JOB_DEFAULTS,
)

ALL_JOBS = [TARGET_JOBS[t] for t in SyncTarget] + [SYNC_ALL_JOB]
