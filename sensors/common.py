"""What the sensors share: the app database and their tick interval."""
from __future__ import annotations

import threading

from sqlalchemy import Engine

from moodle_assets.settings import default_database_url, validate_database_url
from moodle_assets.store.db import engine_for
from resources.config import env_int, env_str

# Seconds between two evaluations of each of our sensors (default 30; tests shorten it).
SENSOR_INTERVAL_ENV = "MOODLE_SCHEDULE_SENSOR_INTERVAL_SECONDS"
DEFAULT_SENSOR_INTERVAL_S = 30


def sensor_interval_seconds() -> int:
    return env_int(SENSOR_INTERVAL_ENV, DEFAULT_SENSOR_INTERVAL_S, minimum=1, maximum=3600)


_migrated: set[str] = set()
_migrate_lock = threading.Lock()


def app_engine() -> Engine:
    """Engine for DATABASE_URL, migrated once per process so a fresh database just works.

    Only the database settings are read (as `load_settings()` does): a bad Moodle setting must
    not stop the sensors from recording why the runs fail.
    """
    url = env_str("DATABASE_URL") or default_database_url()
    validate_database_url(url)
    if url not in _migrated:
        with _migrate_lock:
            if url not in _migrated:
                from moodle_assets.store.migrate import upgrade

                upgrade(url)
                _migrated.add(url)
    return engine_for(url)


def ghost_run_state(instance):
    """`run_state_checker`, except that a NOT_STARTED Dagster run is not "waiting in a queue".

    A run stays NOT_STARTED when the process that created it died before starting or
    submitting it (e.g. `moodle-integration sync` killed while loading). Counted as queued,
    its RUNNING history row would never become a ghost and would block the target forever;
    counted as running, the heartbeat timeout closes it.
    """
    from dagster import DagsterRunStatus

    from moodle_assets.dagster_runs import run_state_checker
    from moodle_assets.store.sync_runs import RUNNING

    base = run_state_checker(instance)

    def check(dagster_run_id: str):
        run = instance.get_run_by_id(dagster_run_id)
        if run is not None and run.status == DagsterRunStatus.NOT_STARTED:
            return RUNNING
        return base(dagster_run_id)

    return check
