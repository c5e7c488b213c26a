"""The console script as someone setting it up for the first time meets it (a subprocess each):
`check` with its exit codes and `--json`, and failures printed as cause and fix, never as a
Python traceback, whatever is wrong (the token, the URL, the app database, the data directory)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from moodle_emulator import EmulatorServer

CLI = [str(Path(sys.executable).with_name("moodle-integration"))]
ADMIN = "cli-onboarding-admin-0123456789abcdef"
TOKENS = {
    "reader": "reader",
    "dedicated": {"preset": "dedicated", "username": "moodlesync"},
    "no_viewdetails": {"preset": "dedicated", "username": "capuser", "without": ["moodle/user:viewdetails"]},
    "two_missing": {"preset": "dedicated", "username": "moodlesync",
                    "functions": ["core_webservice_get_site_info", "core_course_get_categories",
                                  "core_course_get_courses_by_field"]},
}


def tok(name: str) -> str:
    return f"cli-{name}-0123456789abcdef"


@pytest.fixture(scope="module")
def moodle():
    with EmulatorServer(scale="real", token=ADMIN, tokens={tok(k): v for k, v in TOKENS.items()}) as emu:
        yield emu


def run(args, tmp_path, **env_extra):
    env = os.environ.copy()
    env["MOODLE_INTEGRATION_DATA_DIR"] = str(tmp_path / "data")
    env["MOODLE_RATE_LIMIT_BASE_DELAY_MS"] = "5"
    env["MOODLE_RATE_LIMIT_MAX_DELAY_MS"] = "10"
    env.update(env_extra)
    return subprocess.run(CLI + args, env=env, capture_output=True, text=True, timeout=300)


def assert_no_traceback(out) -> None:
    assert "Traceback" not in out.stderr + out.stdout
    assert 'File "' not in out.stderr + out.stdout


# --- check --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, code", [(None, 0), ("dedicated", 0), ("no_viewdetails", 3), ("reader", 1),
                                        ("two_missing", 1)])
def test_check_exit_codes(moodle, tmp_path, name, code):
    token = ADMIN if name is None else tok(name)
    out = run(["check"], tmp_path, MOODLE_URL=moodle.url, MOODLE_TOKEN=token)
    assert out.returncode == code, out.stdout + out.stderr
    assert token not in out.stdout + out.stderr
    assert out.stdout.splitlines()[-1].endswith(f"(exit {code})")
    assert_no_traceback(out)


def test_check_names_both_missing_functions(moodle, tmp_path):
    out = run(["check"], tmp_path, MOODLE_URL=moodle.url, MOODLE_TOKEN=tok("two_missing"))
    line = next(l for l in out.stdout.splitlines() if "functions the sync calls" in l)
    assert line.startswith("✗") and "core_enrol_get_enrolled_users, core_user_get_users_by_field" in line


def test_check_json_for_monitoring(moodle, tmp_path):
    out = run(["check", "--json"], tmp_path, MOODLE_URL=moodle.url, MOODLE_TOKEN=tok("no_viewdetails"))
    data = json.loads(out.stdout)
    assert out.returncode == 3 and data["exit_code"] == 3 and data["result"] == "partial"
    assert data["token_user"]["username"] == "capuser" and data["token_user"]["site_admin"] is False
    bad = [c for c in data["checks"] if c["status"] == "warn"]
    assert [c["key"] for c in bad] == ["capability:moodle/user:viewdetails"] and bad[0]["fix"]
    assert tok("no_viewdetails") not in out.stdout and moodle.dataset.site.privatekey not in out.stdout


@pytest.mark.parametrize("url", ["{url}/webservice/rest/server.php", "{url}/login/index.php"])
def test_check_a_pasted_page_url_is_a_configuration_error_with_the_base_url(moodle, tmp_path, url):
    out = run(["check"], tmp_path, MOODLE_URL=url.format(url=moodle.url), MOODLE_TOKEN=ADMIN)
    assert out.returncode == 2
    assert out.stdout.splitlines()[1].startswith("✗ MOODLE_URL is a site address")
    assert f"use {moodle.url} " in out.stdout


def test_check_without_a_token_is_a_configuration_error(moodle, tmp_path):
    out = run(["check", "--json"], tmp_path, MOODLE_URL=moodle.url)
    assert out.returncode == 2 and json.loads(out.stdout)["checks"][0]["status"] == "fail"


def test_help_documents_the_exit_codes(tmp_path):
    for args in (["--help"], ["check", "--help"], ["sync", "--help"]):
        text = run(args, tmp_path).stdout
        assert "exit codes:" in text and "3   check only" in text


# --- sync: outcome per target, cause and fix -----------------------------------------------------


def test_sync_with_a_wrong_token_prints_cause_and_fix_not_a_traceback(moodle, tmp_path):
    out = run(["sync", "--target", "COURSE_CATALOG"], tmp_path, MOODLE_URL=moodle.url, MOODLE_TOKEN="wrong-0123456789")
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    assert lines[0].startswith("COURSE_CATALOG   FAILED") and "Invalid token" in lines[0]
    assert lines[1].strip().startswith("fix: check MOODLE_TOKEN")
    assert out.stderr.strip() == ""  # Dagster's log stays in the run's event log
    assert_no_traceback(out)


def test_sync_verbose_shows_dagsters_log(moodle, tmp_path):
    out = run(["--verbose", "sync", "--target", "COURSE_CATALOG"], tmp_path, MOODLE_URL=moodle.url,
              MOODLE_TOKEN="wrong-0123456789")
    assert out.returncode == 1 and "dagster - ERROR" in out.stderr and "Stack Trace" in out.stderr


def test_sync_with_a_weaker_token_succeeds_with_visible_warnings(moodle, tmp_path):
    out = run(["sync", "--target", "COURSE_CATALOG"], tmp_path, MOODLE_URL=moodle.url, MOODLE_TOKEN=tok("reader"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout and "warning: courses: 1 courses exist that this token cannot see" in out.stdout
    runs = run(["runs"], tmp_path)
    assert "warning: " in runs.stdout


def test_sync_against_a_closed_port_says_which_port(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = run(["sync", "--target", "COURSE_CATALOG"], tmp_path, MOODLE_URL=f"http://127.0.0.1:{port}",
              MOODLE_TOKEN=ADMIN, MOODLE_RATE_LIMIT_MAX_RETRIES="1")
    assert out.returncode == 1 and f"127.0.0.1:{port} refused" in out.stdout and "fix: nothing accepts" in out.stdout
    assert_no_traceback(out)


# --- the app database and the data directory -----------------------------------------------------


@pytest.mark.parametrize("command", [["runs"], ["config", "show"], ["sync", "--target", "COURSE_CATALOG"]])
def test_an_unreachable_database_is_named_with_the_password_masked(moodle, tmp_path, command):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql://sync:hunter2secret@127.0.0.1:{port}/school"
    out = run(command, tmp_path, DATABASE_URL=url, MOODLE_URL=moodle.url, MOODLE_TOKEN=ADMIN)
    assert out.returncode == 1
    first = out.stderr.splitlines()[0]
    assert first.startswith(f"error: the app database postgresql://sync:***@127.0.0.1:{port}/school is unreachable")
    assert "hunter2secret" not in out.stderr + out.stdout
    assert "fix: check that the database server runs" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 3  # cause, fix, the --verbose hint
    assert_no_traceback(out)


def test_an_unresolvable_database_host(tmp_path):
    out = run(["runs"], tmp_path, DATABASE_URL="postgresql://sync:pw@db-host.invalid/school")
    assert out.returncode == 1 and "its host name does not resolve" in out.stderr


def test_a_data_directory_that_cannot_be_created(tmp_path):
    # `runs` only reads: a database that is not there is refused, never created (exit 2).
    out = run(["runs"], tmp_path, MOODLE_INTEGRATION_DATA_DIR="/proc/moodle-integration-test")
    assert out.returncode == 2 and "does not exist" in out.stderr
    assert "/proc/moodle-integration-test" in out.stderr.splitlines()[0]
    assert_no_traceback(out)
    out = run(["db", "upgrade"], tmp_path, MOODLE_INTEGRATION_DATA_DIR="/proc/moodle-integration-test")
    assert out.returncode == 1
    assert "/proc/moodle-integration-test" in out.stderr.splitlines()[0]
    assert "MOODLE_INTEGRATION_DATA_DIR" in out.stderr
    assert_no_traceback(out)


def test_a_read_only_data_directory(tmp_path):
    """A real read-only file system (a tmpfs remounted read-only); skipped where mounting is not allowed."""
    mount = tmp_path / "ro"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(mount)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        assert run(["db", "upgrade"], tmp_path, MOODLE_INTEGRATION_DATA_DIR=str(mount)).returncode == 0
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        out = run(["config", "set", "ENROLLMENTS", "--enable"], tmp_path, MOODLE_INTEGRATION_DATA_DIR=str(mount))
        assert out.returncode == 1
        assert f"SQLite database {mount}/moodle_integration.sqlite3" in out.stderr and "read-only" in out.stderr
        assert_no_traceback(out)
        out = run(["db", "upgrade"], tmp_path, MOODLE_INTEGRATION_DATA_DIR=str(mount / "new"))
        assert out.returncode == 1 and "Read-only file system" in out.stderr
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)
