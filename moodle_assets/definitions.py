"""The Dagster code location `moodle_integration`: assets, jobs, sensors, resources."""
from __future__ import annotations

from dagster import Definitions, EnvVar

from resources.app_db import AppDatabaseResource
from resources.moodle import MoodleResource

from .assets import ASSETS
from .jobs import ALL_JOBS


def _sensors():
    try:
        from sensors import SENSORS
    except ImportError:
        return []
    return SENSORS


defs = Definitions(
    assets=ASSETS,
    jobs=ALL_JOBS,
    sensors=_sensors(),
    resources={
        # Only the variables' names reach Dagster's run storage, never their values.
        "moodle": MoodleResource(url=EnvVar("MOODLE_URL"), token=EnvVar("MOODLE_TOKEN")),
        "app_db": AppDatabaseResource(),
    },
)
