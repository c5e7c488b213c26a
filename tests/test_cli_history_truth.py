"""The `sync` and `runs` commands tell the truth (a subprocess each, the emulator as Moodle):
ENROLLMENTS before its upstream ever synced is refused with the fix and a nonzero exit (SQLite
and PostgreSQL), and the counts printed add up, the same way in `sync` and `runs`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from moodle_emulator import EmulatorServer

CLI = [str(Path(sys.executable).with_name("moodle-integration"))]
TOKEN = "cli-truth-admin-0123456789abcdef"
NEVER_SYNCED = (
    "courses and users have never been synced: run COURSE_CATALOG and USER_DIRECTORY first (or sync all)"
)
SUM = re.compile(
    r"fetched (\d+) = inserted (\d+) \+ updated (\d+) \+ unchanged (\d+) \+ rejected (\d+) \+ skipped (\d+)"
)


@pytest.fixture(scope="module")
def moodle():
    with EmulatorServer(scale="real", token=TOKEN) as emu:
        yield emu


def run(args, tmp_path, moodle, database_url: str | None = None):
    env = os.environ.copy()
    env.update(
        MOODLE_INTEGRATION_DATA_DIR=str(tmp_path / "data"),
        MOODLE_URL=moodle.url,
        MOODLE_TOKEN=TOKEN,
        MOODLE_RATE_LIMIT_BASE_DELAY_MS="5",
        MOODLE_RATE_LIMIT_MAX_DELAY_MS="10",
    )
    if database_url:
        env["DATABASE_URL"] = database_url
    return subprocess.run(CLI + args, env=env, capture_output=True, text=True, timeout=300)


def test_enrollments_on_a_fresh_database_is_refused_with_the_fix(moodle, tmp_path, db_url):
    out = run(["sync", "--target", "ENROLLMENTS"], tmp_path, moodle, db_url)
    assert out.returncode == 1, out.stdout + out.stderr
    assert re.search(r"^ENROLLMENTS\s+FAILED\s+" + re.escape(NEVER_SYNCED) + "$", out.stdout, re.M), out.stdout
    assert "SUCCESS" not in out.stdout.replace("FAILURE", "")
    runs = run(["runs"], tmp_path, moodle, db_url)
    [line] = [line for line in runs.stdout.splitlines() if " ENROLLMENTS " in line]
    assert " FAILED " in line and "courses and users have never been synced" in line
    assert line.count("–") >= 7  # duration, queue and every count unknown, not 0

    # After `sync --all` it runs.
    assert run(["sync", "--all"], tmp_path, moodle, db_url).returncode == 0


def test_sync_and_runs_print_counts_that_add_up(moodle, tmp_path):
    out = run(["sync", "--all"], tmp_path, moodle)
    assert out.returncode == 0, out.stdout + out.stderr
    sums = {line.split()[0]: SUM.search(line) for line in out.stdout.splitlines() if " SUCCESS " in line}
    assert set(sums) == {"COURSE_CATALOG", "USER_DIRECTORY", "ENROLLMENTS"}
    for target, match in sums.items():
        fetched, *parts = (int(n) for n in match.groups())
        assert fetched == sum(parts) and fetched > 0, target
    assert sums["USER_DIRECTORY"].group(6) != "0"  # the guest user is skipped, and shown

    runs = run(["runs"], tmp_path, moodle)
    database, header, *lines = runs.stdout.splitlines()
    assert database.startswith("database: ")
    columns = header.split()
    assert columns[columns.index("FETCHED"):columns.index("NOTE")] == ["FETCHED", "INS", "UPD", "UNCH", "REJ", "SKIP",
                                                                       "DEACT"]
    for line in lines:
        cells = line.split()
        target = cells[1]
        # ID TARGET STATUS TRIGGER DATE TIME SECONDS QUEUED FETCHED INS UPD UNCH REJ SKIP DEACT
        fetched, ins, upd, unch, rej, skip = (int(c) for c in cells[8:14])
        assert fetched == ins + upd + unch + rej + skip
        assert (fetched, ins, upd, unch, rej, skip) == tuple(int(n) for n in sums[target].groups())
        assert float(cells[6]) >= 0 and float(cells[7]) >= 0  # the sync's own seconds, the queue apart
