"""Fixtures for the Moodle client tests (helpers live in moodle_replay.py: a module named
``conftest`` is ambiguous when several test folders have one)."""
from __future__ import annotations

import logging

import pytest
from moodle_replay import SECRET_TOKEN, ReplayServer


@pytest.fixture(scope="session")
def _replay_server():
    with ReplayServer() as server:
        yield server


@pytest.fixture
def replay(_replay_server):
    _replay_server.reset()
    yield _replay_server
    _replay_server.reset()


@pytest.fixture
def throttle_dir(tmp_path):
    d = tmp_path / "throttle"
    d.mkdir()
    return str(d)


@pytest.fixture
def make_client(throttle_dir):
    """Build MoodleClients with fast test settings (tiny delays, no throttle by default)."""
    from resources.moodle import MoodleClient

    made = []

    def make(url: str, token: str = SECRET_TOKEN, **overrides):
        settings = dict(max_retries=3, base_delay_ms=5, max_delay_ms=20, requests_per_second=0,
                        throttle_dir=throttle_dir, connect_timeout_s=2, read_timeout_s=5)
        settings.update(overrides)
        client = MoodleClient(url, token, **settings)
        made.append(client)
        return client

    yield make
    for c in made:
        c.close()


@pytest.fixture(autouse=True)
def _no_token_in_logs(caplog):
    """Every test in this folder: capture DEBUG logs, then check the token never shows."""
    caplog.set_level(logging.DEBUG)
    yield
    for record in caplog.records:
        text = record.getMessage()
        assert SECRET_TOKEN not in text, f"token leaked into log line: {record.name}"
        assert "wstoken=5ec" not in text
