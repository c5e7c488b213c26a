"""The CLI syncs the emulator's real-site dataset through Dagster, end to end."""
from __future__ import annotations

from sqlalchemy import func, select

from moodle_assets.cli import main
from moodle_assets.settings import load_settings
from moodle_assets.store.db import create_app_engine, transaction
from moodle_assets.store.models import CourseCatalog, User, UserCourseEnrollment
from moodle_assets.history import SyncHistory


def test_cli_sync_all_then_resync_writes_nothing(app_env, dagster_home, capsys):
    assert main(["sync", "--all"]) == 0
    out = capsys.readouterr().out
    assert "COURSE_CATALOG   SUCCESS" in out and "ENROLLMENTS      SUCCESS" in out
    engine = create_app_engine(load_settings().database_url)
    with transaction(engine) as s:
        assert s.scalar(select(func.count()).select_from(CourseCatalog)) == 6
        assert s.scalar(select(func.count()).select_from(User)) == 14
        assert s.scalar(select(func.count()).select_from(UserCourseEnrollment)) == 22
    assert main(["sync", "--all"]) == 0
    runs = SyncHistory(engine).recent(limit=3)
    assert {r.status for r in runs} == {"SUCCESS"}
    assert all(r.trigger == "CLI" for r in runs)
    assert all(r.rows_inserted == 0 and r.rows_updated == 0 and r.rows_deactivated == 0 for r in runs)
    assert all(r.dagster_run_id for r in runs)
