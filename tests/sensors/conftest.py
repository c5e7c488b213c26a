from __future__ import annotations

import pytest
from dagster import DagsterInstance

from moodle_assets.history import SyncHistory
from resources.app_db import AppDatabaseResource


@pytest.fixture
def app_db(migrated_engine):
    """A migrated app DB (engine)."""
    return migrated_engine


@pytest.fixture
def db_resource(db_url, migrated_engine) -> AppDatabaseResource:
    """The `app_db` resource the sensors get, on the same database."""
    return AppDatabaseResource(url=db_url, heartbeat_timeout_seconds=60)


@pytest.fixture
def history(db_resource) -> SyncHistory:
    return db_resource.history()


@pytest.fixture
def instance():
    with DagsterInstance.ephemeral() as inst:
        yield inst
