"""The Dagster code location `moodle_integration`: assets, jobs, sensors, resources."""
from __future__ import annotations

from dagster import AssetSelection, Definitions, EnvVar, define_asset_job

from resources.app_db import AppDatabaseResource
from resources.moodle import MoodleResource

from .assets import ASSETS
from .targets import SYNC_ALL_JOB_NAME, TAG_TARGET, TARGET_SPECS


def _jobs():
    jobs = [
        define_asset_job(
            spec.job_name,
            selection=AssetSelection.assets(spec.asset_name),
            description=spec.description,
            tags={TAG_TARGET: spec.target.value},
        )
        for spec in TARGET_SPECS.values()
    ]
    jobs.append(
        define_asset_job(
            SYNC_ALL_JOB_NAME,
            selection=AssetSelection.assets(*[s.asset_name for s in TARGET_SPECS.values()]),
            description="Every target, in dependency order (catalog and users, then enrollments).",
        )
    )
    return jobs


def _sensors():
    try:
        from sensors import SENSORS
    except ImportError:
        return []
    return SENSORS


defs = Definitions(
    assets=ASSETS,
    jobs=_jobs(),
    sensors=_sensors(),
    resources={
        # Only the variables' names reach Dagster's run storage, never their values.
        "moodle": MoodleResource(url=EnvVar("MOODLE_URL"), token=EnvVar("MOODLE_TOKEN")),
        "app_db": AppDatabaseResource(),
    },
)
