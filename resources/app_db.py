"""The app-database resource: where the synced tables and the sync history live."""

from __future__ import annotations

import threading

from dagster import ConfigurableResource
from pydantic import Field
from sqlalchemy import Engine

from moodle_assets.history import SyncHistory
from moodle_assets.history.runs import DEFAULT_HEARTBEAT_TIMEOUT_S
from moodle_assets.store.db import engine_for
from moodle_assets.store.migrate import upgrade

_migrated: set[str] = set()
_migrate_lock = threading.Lock()


class AppDatabaseResource(ConfigurableResource):
    """The app database and the sync history's policy, bound in `definitions.py` from the settings.

    `url` comes from `EnvVar("DATABASE_URL")` when the variable is set (it may hold a password,
    and an `EnvVar` keeps it out of Dagster's run storage), else it is the default SQLite path.
    """

    url: str = Field(description="SQLAlchemy URL of the app database (DATABASE_URL)")
    heartbeat_timeout_seconds: int = Field(
        default=DEFAULT_HEARTBEAT_TIMEOUT_S,
        description="a RUNNING sync without a heartbeat this long is closed as worker lost",
    )

    def engine(self) -> Engine:
        return engine_for(self.url)

    def migrated_engine(self) -> Engine:
        """The engine, with pending migrations applied once per process (sensors start on any database)."""
        if self.url not in _migrated:
            with _migrate_lock:
                if self.url not in _migrated:
                    upgrade(self.url)
                    _migrated.add(self.url)
        return self.engine()

    def history(self, *, migrate: bool = False) -> SyncHistory:
        engine = self.migrated_engine() if migrate else self.engine()
        return SyncHistory(engine, heartbeat_timeout=self.heartbeat_timeout_seconds)
