"""Fixtures for the production suite: one real split deployment per session (see production_stack.py)."""
from __future__ import annotations

import pytest

from production_stack import EMULATOR_TOKEN, start_stack


@pytest.fixture(scope="session")
def prod_emulator():
    """The demo school (36 courses, 200 users, ~1,100 enrolments) as Moodle, for the stack."""
    from moodle_emulator import EmulatorServer

    with EmulatorServer(scale="demo", token=EMULATOR_TOKEN, port=0) as emu:
        yield emu


@pytest.fixture(scope="session")
def stack(tmp_path_factory, pg_server, prod_emulator):
    """Code server, daemon and web process as three processes on PostgreSQL (both databases)."""
    s = start_stack(tmp_path_factory.mktemp("prod_stack"), pg_server, prod_emulator)
    try:
        yield s
    finally:
        s.stop()
        s.app_pg.close()


@pytest.fixture
def prod(stack):
    """The stack, idle, with Moodle healthy again, before and after each test."""
    stack.emulator_faults({})
    stack.check_alive()
    stack.wait_idle()
    yield stack
    stack.emulator_faults({})
    stack.check_alive()


@pytest.fixture
def cli_deployment(pg_server, pg_url, tmp_path, monkeypatch, prod_cli_emulator):
    """`moodle-integration sync` as production runs it: Dagster storage and the app DB on
    PostgreSQL (deploy/dagster.postgres.yaml), the emulator (demo school) as Moodle."""
    import uuid

    from production_stack import production_dagster_yaml, set_faults

    name = f"dagster_{uuid.uuid4().hex[:10]}"
    pg_server.psql(f"CREATE DATABASE {name};")
    home = production_dagster_yaml(tmp_path / "dagster_home")
    for key, value in {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_URL": pg_server.get_uri(database=name, driver="psycopg2"),
        "DATABASE_URL": pg_url,
        "MOODLE_URL": prod_cli_emulator.url,
        "MOODLE_TOKEN": prod_cli_emulator.token,
        "MOODLE_INTEGRATION_DATA_DIR": str(tmp_path / "data"),
        "MOODLE_RATE_LIMIT_BASE_DELAY_MS": "20",
        "MOODLE_RATE_LIMIT_MAX_DELAY_MS": "100",
    }.items():
        monkeypatch.setenv(key, value)
    set_faults(prod_cli_emulator, {})
    yield prod_cli_emulator
    set_faults(prod_cli_emulator, {})


@pytest.fixture(scope="module")
def prod_cli_emulator():
    from moodle_emulator import EmulatorServer

    with EmulatorServer(scale="demo", token=EMULATOR_TOKEN, port=0) as emu:
        yield emu
