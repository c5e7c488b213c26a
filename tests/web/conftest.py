"""Fixtures for the web tests (see web_helpers.py for the web process itself)."""
from __future__ import annotations

import pytest

from web_helpers import EMULATOR_TOKEN, web_process


@pytest.fixture(scope="module")
def queued_web(tmp_path_factory):
    with web_process(tmp_path_factory.mktemp("web_queued"), coordinator="queued") as web:
        yield web


@pytest.fixture(scope="module")
def module_emulator():
    from moodle_emulator import EmulatorServer

    with EmulatorServer(scale="real", token=EMULATOR_TOKEN, port=0) as emu:
        yield emu


@pytest.fixture(scope="module")
def live_web(tmp_path_factory, module_emulator):
    """Runs execute for real (immediate coordinator) against the emulator."""
    with web_process(tmp_path_factory.mktemp("web_live"), coordinator="immediate", moodle_url=module_emulator.url) as web:
        yield web
