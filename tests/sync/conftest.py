from __future__ import annotations

import pytest
import requests

from moodle_assets.sync.fetch import MoodleFetcher
from moodle_assets.sync.options import SyncOptions
from resources.moodle import MoodleResource


class Site:
    """The emulator, driven over HTTP like any other client would."""

    def __init__(self, emulator):
        self.emu = emulator

    def mutate(self, *ops: dict) -> list:
        answer = requests.post(f"{self.emu.url}/__emulator__/mutate", json={"ops": list(ops)}, timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def faults(self, config: dict) -> None:
        answer = requests.post(f"{self.emu.url}/__emulator__/faults", json=config, timeout=10)
        assert answer.status_code == 200, answer.text

    def counters(self) -> dict:
        return requests.get(f"{self.emu.url}/__emulator__/counters", timeout=10).json()


@pytest.fixture
def site(emulator) -> Site:
    return Site(emulator)


@pytest.fixture
def fetcher(emulator):
    client = MoodleResource(url=emulator.url, token=emulator.token, base_delay_ms=5, max_delay_ms=20).get_client()
    yield MoodleFetcher(client)
    client.close()


@pytest.fixture
def options() -> SyncOptions:
    return SyncOptions()
