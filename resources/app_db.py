"""The app-database resource: where the synced tables and the sync history live."""
from __future__ import annotations

from typing import Optional

from dagster import ConfigurableResource
from sqlalchemy import Engine

from moodle_assets.settings import load_settings
from moodle_assets.store.db import engine_for


class AppDatabaseResource(ConfigurableResource):
    """SQLAlchemy engine for `DATABASE_URL` (default: the SQLite file under the data dir).

    `url` is optional and normally left unset so the URL (which may hold a password) is read
    from the environment at run time and never lands in Dagster's run config.
    """

    url: Optional[str] = None

    def resolved_url(self) -> str:
        return self.url or load_settings().database_url

    def engine(self) -> Engine:
        return engine_for(self.resolved_url())
