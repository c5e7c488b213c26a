"""Log lines reach operators: the client's retries, throttle waits and Retry-After pauses land
in the run's Dagster event log (managed Python loggers), and the CLI/web process's own lines go
to stderr at the configured level with secrets masked."""

from __future__ import annotations

import logging

import requests
from dagster import DagsterInstance

from moodle_assets.cli.logging_setup import configure_logging
from moodle_assets.core.redaction import register_secrets
from moodle_assets.definitions import build_definitions
from moodle_assets.settings import load_settings
from tests.conftest import write_dagster_home


def test_retries_and_retry_after_pauses_are_in_the_runs_event_log(emulator, tmp_path, monkeypatch):
    home = write_dagster_home(tmp_path / "dagster_home", run_coordinator="immediate")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    # The run resolves its Moodle URL and token from the environment (EnvVar), as in production.
    monkeypatch.setenv("MOODLE_URL", emulator.url)
    monkeypatch.setenv("MOODLE_TOKEN", emulator.token)
    settings = load_settings({
        "MOODLE_URL": emulator.url, "MOODLE_TOKEN": emulator.token,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'app.sqlite3'}",
        "MOODLE_RATE_LIMIT_BASE_DELAY_MS": "10", "MOODLE_RATE_LIMIT_MAX_DELAY_MS": "50",
        "MOODLE_THROTTLE_DIR": str(tmp_path / "throttle"),
    })
    faults = {"script": [
        {"fault": "http_503", "count": 1, "wsfunction": "core_course_get_categories"},
        {"fault": "http_429", "count": 1, "retry_after": 1, "wsfunction": "core_course_get_courses_by_field"},
    ]}
    requests.post(f"{emulator.url}/__emulator__/faults", json=faults, timeout=5).raise_for_status()
    from moodle_assets.store.migrate import upgrade

    upgrade(settings.database_url)
    with DagsterInstance.get() as instance:
        assert instance.managed_python_loggers == ["resources.moodle", "moodle_assets"]
        job = build_definitions(settings).resolve_job_def("sync_course_catalog")
        result = job.execute_in_process(instance=instance)
        assert result.success
        messages = [r.user_message for r in instance.all_logs(result.run_id) if r.user_message]
    retry = [m for m in messages if "core_course_get_categories" in m and "retry 1/3" in m]
    pause = [m for m in messages if "asked to retry after 1" in m and "pauses" in m]
    assert retry and pause, messages
    assert not any(emulator.token in m for m in messages)


def test_cli_log_lines_go_to_stderr_at_the_level_with_secrets_masked(capfd):
    register_secrets(["log-secret-4242"])
    configure_logging("WARNING")
    log = logging.getLogger("moodle_assets.web")
    log.info("an info line that WARNING hides")
    log.warning("sync trigger refused for token log-secret-4242")
    configure_logging("INFO")
    log.info("admin page: 127.0.0.1 set ENROLLMENTS enabled, every 30 min")
    err = capfd.readouterr().err
    assert "an info line" not in err
    assert "sync trigger refused for token [REDACTED]" in err and "log-secret-4242" not in err
    assert "WARNING moodle_assets.web: sync trigger refused" in err
    assert "INFO moodle_assets.web: admin page: 127.0.0.1 set ENROLLMENTS" in err
    configure_logging("INFO")  # idempotent: one handler, one line each
    log.info("once")
    assert capfd.readouterr().err.count("once") == 1
