"""Helpers for the web tests. The real web process for tests: Dagster webserver + our routes, served over HTTP.

A `WebProcess` is what `serve` runs minus the daemon: the app from `create_app`, with a
`WorkspaceProcessContext` (code server subprocess) kept open, served by uvicorn in a thread,
against a migrated SQLite app DB and, when asked, the bundled emulator as Moodle. Starting one
takes a few seconds (the code server), so each test module shares one; tests reset the sync
history and config they rely on.

- coordinator "immediate": launched runs execute for real in a subprocess (browser tests);
- coordinator "queued" with no daemon: launched runs are created and stay QUEUED, so claims
  stay RUNNING and nothing executes (trigger matrix, concurrency: fast and deterministic).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from sqlalchemy import delete, update

REPO_ROOT = Path(__file__).resolve().parents[2]
EMULATOR_TOKEN = "emulator-web-token-91d3"

SYNC_SECRET = "cron-secret-3b7e2a9d41"
WEB_TOKEN = "web-token-6c1f0e77a2b4"
TRIGGER = "/api/integration/moodle/sync"
ADMIN = "/dashboard/admin/integration"


def write_dagster_home(path: Path, *, run_coordinator: str) -> Path:
    """The project's dagster.yaml; "immediate" swaps in the coordinator that launches at once
    (the same as tests/conftest.py's helper, which a sub-folder conftest cannot import)."""
    path.mkdir(parents=True, exist_ok=True)
    config = (REPO_ROOT / "dagster.yaml").read_text()
    if run_coordinator == "immediate":
        start, end = config.index("run_coordinator:"), config.index("\nrun_monitoring:")
        config = (
            config[:start]
            + "run_coordinator:\n  module: dagster._core.run_coordinator\n  class: DefaultRunCoordinator\n"
            + config[end:]
        )
    (path / "dagster.yaml").write_text(config)
    return path


@dataclass
class WebProcess:
    url: str
    engine: object
    instance: object
    tmp: Path
    process_context: object = None
    settings: object = None
    responses: list = field(default_factory=list)

    @contextlib.contextmanager
    def variant(self, **overrides):
        """The same web process (same code server, database and instance) with other settings,
        e.g. `web_token=...` or `sync_secret=None`, served on another port."""
        from moodle_assets.web.app import create_app
        from moodle_assets.web.serve import BackgroundServer

        settings = self.settings.model_copy(update=overrides)
        with BackgroundServer(create_app(self.process_context, settings)) as server:
            yield WebProcess(
                url=server.url, engine=self.engine, instance=self.instance, tmp=self.tmp,
                process_context=self.process_context, settings=settings, responses=self.responses,
            )

    def session(self) -> requests.Session:
        """A requests session that remembers every response body (checked for secrets)."""
        session = requests.Session()
        session.hooks["response"].append(lambda r, *a, **k: self.responses.append(r))
        return session

    def reset_history(self, *, enabled: bool = True, frequency: int = 60, next_run_at=None) -> None:
        from moodle_assets.store.db import transaction
        from moodle_assets.store.models import IntegrationSyncConfig, IntegrationSyncRun

        with transaction(self.engine) as s:
            s.execute(delete(IntegrationSyncRun))
            s.execute(
                update(IntegrationSyncConfig).values(
                    enabled=enabled, frequency_minutes=frequency, next_run_at=next_run_at, last_run_at=None
                )
            )


@contextlib.contextmanager
def web_process(tmp: Path, *, coordinator: str, moodle_url: str | None = None, extra_env: dict | None = None):
    from dagster import DagsterInstance

    from moodle_assets.orchestration.instance import WORKSPACE_FILE
    from moodle_assets.settings import load_settings
    from moodle_assets.store.db import create_app_engine
    from moodle_assets.store.migrate import upgrade
    from moodle_assets.web.app import create_app, workspace_context
    from moodle_assets.web.serve import BackgroundServer

    env = {
        "MOODLE_INTEGRATION_DATA_DIR": str(tmp / "data"),
        "DATABASE_URL": f"sqlite:///{tmp / 'data' / 'app.sqlite3'}",
        "DAGSTER_HOME": str(write_dagster_home(tmp / "dagster_home", run_coordinator=coordinator)),
        "MOODLE_SYNC_CRON_SECRET": SYNC_SECRET,
        "MOODLE_TOKEN": EMULATOR_TOKEN,
        "MOODLE_RATE_LIMIT_BASE_DELAY_MS": "10",
        "MOODLE_RATE_LIMIT_MAX_DELAY_MS": "50",
        **({"MOODLE_URL": moodle_url} if moodle_url else {}),
        **(extra_env or {}),
    }
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        if not moodle_url:
            # Runs never execute in the queued set-up, but the job's config must resolve.
            mp.setenv("MOODLE_URL", "http://127.0.0.1:9")
        upgrade(env["DATABASE_URL"])
        engine = create_app_engine(env["DATABASE_URL"])
        with DagsterInstance.get() as instance, workspace_context(instance, WORKSPACE_FILE) as context:
            settings = load_settings()
            app = create_app(context, settings)
            with BackgroundServer(app) as server:
                yield WebProcess(
                    url=server.url, engine=engine, instance=instance, tmp=tmp, process_context=context, settings=settings
                )
        engine.dispose()


