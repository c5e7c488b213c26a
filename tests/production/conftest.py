"""Fixtures for the production suite: one real split deployment per session (see production_stack.py)."""
from __future__ import annotations

import pytest

from production_stack import EMULATOR_TOKEN, start_stack


@pytest.fixture(scope="session")
def prod_emulator():
    """The demo school (36 courses, 200 users, ~1,100 enrolments) as Moodle, for the stack."""
    from moodle_assets.emulator import EmulatorServer

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
