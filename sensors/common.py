"""What the sensors share: the app database and their tick interval."""
from __future__ import annotations

import threading

from sqlalchemy import Engine

from moodle_assets.settings import load_settings
from moodle_assets.store.db import engine_for
from resources.config import env_int

# Seconds between two evaluations of each of our sensors (default 30; tests shorten it).
SENSOR_INTERVAL_ENV = "MOODLE_SCHEDULE_SENSOR_INTERVAL_SECONDS"
DEFAULT_SENSOR_INTERVAL_S = 30


def sensor_interval_seconds() -> int:
    return env_int(SENSOR_INTERVAL_ENV, DEFAULT_SENSOR_INTERVAL_S, minimum=1, maximum=3600)


_migrated: set[str] = set()
_migrate_lock = threading.Lock()


def app_engine() -> Engine:
    """Engine for DATABASE_URL, migrated once per process so a fresh database just works."""
    url = load_settings().database_url
    if url not in _migrated:
        with _migrate_lock:
            if url not in _migrated:
                from moodle_assets.store.migrate import upgrade

                upgrade(url)
                _migrated.add(url)
    return engine_for(url)
