"""Fixtures for the emulator tests: running emulators on port 0, talked to over HTTP only."""

from __future__ import annotations

import pytest
import requests

from moodle_emulator import EmulatorServer

TOKEN = "test-token-0123456789"


class Client:
    """Tiny helper around requests for the REST endpoint and the control API."""

    def __init__(self, emu: EmulatorServer):
        self.emu = emu
        self.url = emu.url
        self.rest = emu.url + "/webservice/rest/server.php"
        self.token = emu.token
        self.s = requests.Session()

    def call(self, wsfunction: str, params: dict | list | None = None, *, token: str | None = None,
             fmt: str | None = "json", method: str = "POST", get: dict | None = None) -> requests.Response:
        data: list = [("wstoken", self.token if token is None else token), ("wsfunction", wsfunction)]
        if fmt is not None:
            data.append(("moodlewsrestformat", fmt))
        if isinstance(params, dict):
            data += list(params.items())
        elif params:
            data += list(params)
        if method == "GET":
            return self.s.get(self.rest, params=data, timeout=30)
        return self.s.post(self.rest, data=data, params=get, timeout=30)

    def json(self, wsfunction: str, params=None, **kw):
        r = self.call(wsfunction, params, **kw)
        assert r.status_code == 200, r.text
        return r.json()

    def counters(self) -> dict:
        return self.s.get(self.url + "/__emulator__/counters", timeout=10).json()

    def reset(self) -> None:
        assert self.s.post(self.url + "/__emulator__/counters/reset", timeout=10).status_code == 200

    def faults(self, cfg: dict) -> requests.Response:
        r = self.s.post(self.url + "/__emulator__/faults", json=cfg, timeout=10)
        return r

    def mutate(self, ops: list) -> requests.Response:
        return self.s.post(self.url + "/__emulator__/mutate", json={"ops": ops}, timeout=30)

    def summary(self) -> dict:
        return self.s.get(self.url + "/__emulator__/dataset", timeout=10).json()


@pytest.fixture(scope="session")
def real_emu():
    with EmulatorServer(scale="real", token=TOKEN) as emu:
        yield emu


@pytest.fixture
def real(real_emu):
    """Client on the shared real-site emulator; faults cleared and counters reset around each test."""
    c = Client(real_emu)
    c.faults({})
    c.reset()
    yield c
    c.faults({})


@pytest.fixture(scope="session")
def demo_emu():
    with EmulatorServer(scale="demo", seed=42, token=TOKEN) as emu:
        yield emu


@pytest.fixture
def demo(demo_emu):
    c = Client(demo_emu)
    c.faults({})
    c.reset()
    yield c
    c.faults({})


@pytest.fixture
def fresh_real():
    """A private real-site emulator (for tests that mutate data)."""
    with EmulatorServer(scale="real", token=TOKEN) as emu:
        yield Client(emu)


@pytest.fixture
def make_emu():
    """Factory for private emulators with custom options; all are stopped afterwards."""
    started = []

    def make(**kw):
        kw.setdefault("token", TOKEN)
        emu = EmulatorServer(**kw).start()
        started.append(emu)
        return Client(emu)

    yield make
    for emu in started:
        emu.stop()
