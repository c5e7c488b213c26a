"""`changes`, and the reading commands (`runs`, `config show`, `changes`): which database they read,
refusing a missing one, relative paths from the working directory. Run as a user runs them."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from moodle_assets.cli.changes_output import parse_since
from moodle_assets.core.clock import utcnow
from moodle_assets.store.changelog import ChangeLog
from moodle_assets.store.db import create_app_engine, transaction
from moodle_assets.store.migrate import upgrade

CLI = [str(Path(sys.executable).with_name("moodle-integration"))]


def run(args, *, env_extra=None, cwd=None):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MOODLE_INTEGRATION_DATA_DIR")}
    env.update(env_extra or {})
    return subprocess.run(CLI + args, env=env, capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.fixture
def logged_db(tmp_path):
    """A migrated SQLite database with changes of three runs, at known times."""
    url = f"sqlite:///{tmp_path / 'app.sqlite3'}"
    upgrade(url)
    engine = create_app_engine(url)
    now = utcnow()
    with transaction(engine) as s:
        old = ChangeLog(target="USER_DIRECTORY", run_id=1)
        old.add("user", 3, "updated", ["email", "last_name"])
        old.flush(s, now=now - timedelta(days=3))
        recent = ChangeLog(target="ENROLLMENTS", run_id=2)
        recent.add("enrollment", "course 2 user 4", "deactivated")
        recent.add("enrollment", "course 2 user 5", "inserted")
        recent.flush(s, now=now - timedelta(hours=2))
        catalog = ChangeLog(target="COURSE_CATALOG", run_id=3)
        catalog.add("course", 2, "updated", ["price", "fullname"])
        catalog.flush(s, now=now - timedelta(hours=1))
    engine.dispose()
    return {"DATABASE_URL": url}


def body(out) -> list[str]:
    """The change lines (after the database line and the column header)."""
    lines = out.stdout.splitlines()
    assert lines[0].startswith("database: sqlite:///"), out.stdout
    assert lines[1].startswith("CHANGED AT")
    return lines[2:]


def test_changes_lists_one_line_per_change_with_the_database_it_reads(logged_db):
    out = run(["changes"], env_extra=logged_db)
    assert out.returncode == 0, out.stderr
    lines = body(out)
    assert len(lines) == 5  # the course update is two changes: the price, and the rest
    assert "USER_DIRECTORY" in lines[0] and "3 " in lines[0] and "updated" in lines[0] and "email, last_name" in lines[0]
    assert lines[-2].split()[4:] == ["course_price", "2", "updated", "price"]
    assert lines[-1].split()[4:] == ["course", "2", "updated", "fullname"]


def test_changes_filters_by_run_target_since_and_limit(logged_db):
    by_run = body(run(["changes", "--run", "2"], env_extra=logged_db))
    assert [line.split()[2:] for line in by_run] == [
        ["2", "ENROLLMENTS", "enrollment", "course", "2", "user", "4", "deactivated", "-"],
        ["2", "ENROLLMENTS", "enrollment", "course", "2", "user", "5", "inserted", "-"],
    ]
    by_target = body(run(["changes", "--target", "course_catalog"], env_extra=logged_db))
    assert len(by_target) == 2 and all("COURSE_CATALOG" in l for l in by_target)
    since = body(run(["changes", "--since", "24h"], env_extra=logged_db))
    assert len(since) == 4 and not any("USER_DIRECTORY" in l for l in since)
    limited = body(run(["changes", "--limit", "2"], env_extra=logged_db))
    assert limited[-1] == "(the last 2 of 5 changes; --limit shows more)" and len(limited) == 3
    iso = (utcnow() - timedelta(minutes=90)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert len(body(run(["changes", "--since", iso], env_extra=logged_db))) == 2


def test_changes_json_is_one_object_for_scripts(logged_db):
    out = run(["changes", "--json", "--target", "ENROLLMENTS"], env_extra=logged_db)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)  # the database line goes to stderr
    assert "database: sqlite:///" in out.stderr and data["database"].startswith("sqlite:///")
    assert data["total"] == 2
    assert [(c["run_id"], c["entity"], c["moodle_key"], c["kind"]) for c in data["changes"]] == [
        (2, "enrollment", "course 2 user 4", "deactivated"),
        (2, "enrollment", "course 2 user 5", "inserted"),
    ]
    first = data["changes"][0]
    assert first["changed_columns"] == [] and datetime.fromisoformat(first["changed_at"]).utcoffset() == timedelta(0)
    assert first["id"] < data["changes"][1]["id"]


def test_changes_refuses_a_bad_since(logged_db):
    out = run(["changes", "--since", "yesterday-ish"], env_extra=logged_db)
    assert out.returncode == 2 and "24h, 7d" in out.stderr


@pytest.mark.parametrize("args", [["runs"], ["config", "show"], ["changes"]])
def test_reading_commands_refuse_a_missing_database_and_create_none(tmp_path, args):
    missing = tmp_path / "nowhere" / "app.sqlite3"
    out = run(args, env_extra={"DATABASE_URL": f"sqlite:///{missing}"})
    assert out.returncode == 2
    assert f"database: sqlite:///{missing}" in out.stdout
    assert "does not exist" in out.stderr and "moodle-integration db upgrade" in out.stderr
    assert "DATABASE_URL" in out.stderr
    assert not missing.exists() and not missing.parent.exists()


def test_reading_commands_print_the_database_they_read(logged_db):
    for args in (["runs"], ["config", "show"]):
        out = run(args, env_extra=logged_db)
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines()[0] == f"database: {logged_db['DATABASE_URL']}"


def test_relative_paths_resolve_against_the_working_directory(tmp_path):
    here = tmp_path / "somewhere"
    here.mkdir()
    relative_url = {"DATABASE_URL": "sqlite:///rel/app.sqlite3"}
    assert run(["runs"], env_extra=relative_url, cwd=here).returncode == 2  # not there yet: refused
    created = run(["db", "upgrade"], env_extra=relative_url, cwd=here)
    assert created.returncode == 0, created.stderr
    assert (here / "rel" / "app.sqlite3").is_file()
    shown = run(["runs"], env_extra=relative_url, cwd=here)
    assert shown.returncode == 0 and shown.stdout.splitlines()[0] == f"database: sqlite:///{here / 'rel' / 'app.sqlite3'}"
    data_dir = {"MOODLE_INTEGRATION_DATA_DIR": "mydata"}
    assert run(["db", "upgrade"], env_extra=data_dir, cwd=here).returncode == 0
    assert (here / "mydata" / "moodle_integration.sqlite3").is_file()
    assert str(here / "mydata") in run(["config", "show"], env_extra=data_dir, cwd=here).stdout.splitlines()[0]


def test_the_database_line_masks_a_password():
    from moodle_assets.cli.database import describe_database
    from moodle_assets.settings import load_settings

    settings = load_settings({"DATABASE_URL": "postgresql://sync:s3cr3t-pw@db.internal:5432/moodle"})
    line = describe_database(settings)
    assert "s3cr3t-pw" not in line and line == "database: postgresql://sync:***@db.internal:5432/moodle"


def test_parse_since_accepts_relative_and_iso_times():
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    assert parse_since("24h", now=now) == now - timedelta(hours=24)
    assert parse_since("7d", now=now) == now - timedelta(days=7)
    assert parse_since("30m", now=now) == now - timedelta(minutes=30)
    assert parse_since("2026-12-01", now=now) == datetime(2026, 12, 1, tzinfo=UTC)
    assert parse_since("2026-12-01T10:00:00+02:00", now=now) == datetime(2026, 12, 1, 8, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_since("soon", now=now)
