"""`config set` feeds the schedule; `runs --target` shows one target's history, skips included."""
from __future__ import annotations

from moodle_assets.cli import main
from moodle_assets.core.targets import SyncTarget, SyncTrigger
from moodle_assets.history import SyncHistory
from moodle_assets.store.db import engine_for


def test_config_set_then_runs_for_one_target(sqlite_url, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    assert main(["config", "set", "ENROLLMENTS", "--enable", "--every", "30"]) == 0
    line = [l for l in capsys.readouterr().out.splitlines() if l.startswith("ENROLLMENTS")][0]
    assert "yes" in line and "30 min" in line and line.split()[-2:] != ["-", "-"]  # next run set
    engine = engine_for(sqlite_url)
    history = SyncHistory(engine)
    history.skip(SyncTarget.ENROLLMENTS, SyncTrigger.SCHEDULE, "ENROLLMENTS is still syncing (sync run #1)")
    history.skip(SyncTarget.USER_DIRECTORY, SyncTrigger.CLI, "other target")
    assert main(["runs", "--target", "enrollments"]) == 0
    out = capsys.readouterr().out
    assert "SKIPPED" in out and "SCHEDULE" in out and "still syncing" in out and "other target" not in out
    assert main(["config", "set", "ENROLLMENTS", "--disable"]) == 0
    line = [l for l in capsys.readouterr().out.splitlines() if l.startswith("ENROLLMENTS")][0]
    assert line.split()[1] == "no" and line.rstrip().endswith("-")  # disabled: no next run
