from __future__ import annotations

import pytest
from dagster import DagsterInstance


@pytest.fixture
def app_db(migrated_engine, db_url, monkeypatch):
    """A migrated app DB that the sensors' `load_settings()` finds through DATABASE_URL."""
    monkeypatch.setenv("DATABASE_URL", db_url)
    return migrated_engine


@pytest.fixture
def instance():
    with DagsterInstance.ephemeral() as inst:
        yield inst
