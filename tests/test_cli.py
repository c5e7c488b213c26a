"""The console script, run as a user runs it (a subprocess)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CLI = [str(Path(sys.executable).with_name("moodle-integration"))]


def run(args, env_extra=None, tmp_path=None, **kwargs):
    env = os.environ.copy()
    if tmp_path is not None:
        env["MOODLE_INTEGRATION_DATA_DIR"] = str(tmp_path)
    env.update(env_extra or {})
    return subprocess.run(CLI + args, env=env, capture_output=True, text=True, timeout=120, **kwargs)


def test_help_lists_every_contract_subcommand():
    out = run(["--help"]).stdout
    for sub in ("db", "config", "sync", "runs", "serve", "emulator"):
        assert sub in out
    for sub in (["db", "--help"], ["config", "set", "--help"], ["sync", "--help"], ["serve", "--help"], ["runs", "--help"]):
        assert run(sub).returncode == 0


def test_db_upgrade_is_idempotent(tmp_path):
    first = run(["db", "upgrade"], tmp_path=tmp_path)
    second = run(["db", "upgrade"], tmp_path=tmp_path)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    from moodle_assets.store.migrate import head_revision

    assert f"revision {head_revision()}" in second.stdout
    assert (tmp_path / "moodle_integration.sqlite3").exists()


def test_config_show_and_set(tmp_path):
    out = run(["config", "set", "ENROLLMENTS", "--enable", "--every", "15"], tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr
    shown = run(["config", "show"], tmp_path=tmp_path).stdout
    line = next(l for l in shown.splitlines() if l.startswith("ENROLLMENTS"))
    assert "yes" in line and "15 min" in line
    assert next(l for l in shown.splitlines() if l.startswith("USER_DIRECTORY")).split()[1] == "no"


@pytest.mark.parametrize(
    "args, message",
    [
        (["config", "set", "ENROLLMENTS", "--every", "0"], "between 1 and"),
        (["config", "set", "ENROLLMENTS", "--every", "ten"], "whole number"),
        (["config", "set", "GRADES", "--enable"], "unknown target"),
        (["config", "set", "ENROLLMENTS"], "nothing to change"),
    ],
)
def test_config_set_rejects_bad_input(tmp_path, args, message):
    out = run(args, tmp_path=tmp_path)
    assert out.returncode == 2
    assert message in out.stderr


@pytest.mark.parametrize(
    "var, value, message",
    [
        ("DATABASE_URL", "mysql://x/y", "DATABASE_URL must be"),
        ("MOODLE_URL", "ftp://lms", "MOODLE_URL must be an http"),
        ("MOODLE_DEFAULT_CURRENCY", "EURO", "MOODLE_DEFAULT_CURRENCY"),
        ("MOODLE_RATE_LIMIT_MAX_RETRIES", "three", "MOODLE_RATE_LIMIT_MAX_RETRIES"),
        ("MOODLE_RATE_LIMIT_BASE_DELAY_MS", "-5", "MOODLE_RATE_LIMIT_BASE_DELAY_MS"),
        ("MOODLE_SYNC_MAX_DEACTIVATE_FRACTION", "2", "MOODLE_SYNC_MAX_DEACTIVATE_FRACTION"),
    ],
)
def test_bad_environment_fails_with_one_line_naming_the_variable(tmp_path, var, value, message):
    out = run(["config", "show"], {var: value}, tmp_path=tmp_path)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]


def test_sync_without_moodle_url_says_what_to_set(tmp_path):
    out = run(["sync", "--all"], tmp_path=tmp_path)
    assert out.returncode == 2
    assert "MOODLE_URL is not set" in out.stderr
