"""The code location loads, and its public names do not drift (GraphQL callers use them)."""
from __future__ import annotations

from dagster import AssetKey

import subprocess
import sys
from pathlib import Path

import pytest

from moodle_assets.core.targets import ALL_JOB_NAMES, TARGET_SPECS, SyncTarget
from moodle_assets.definitions import build_definitions
from moodle_assets.settings import load_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
defs = build_definitions(load_settings({}))


def test_asset_keys_and_lineage_snapshot():
    graph = defs.resolve_asset_graph()
    keys = sorted(k.to_user_string() for k in graph.get_all_asset_keys())
    assert keys == ["course_catalog", "enrollments", "user_directory"]
    assert graph.get(AssetKey("enrollments")).parent_keys == {AssetKey("course_catalog"), AssetKey("user_directory")}
    assert graph.get(AssetKey("course_catalog")).parent_keys == set()
    assert {graph.get(k).group_name for k in graph.get_all_asset_keys()} == {"moodle"}


def test_job_names_snapshot():
    names = sorted(j.name for j in defs.resolve_all_job_defs() if not j.name.startswith("__"))
    assert names == ["sync_all", "sync_course_catalog", "sync_enrollments", "sync_user_directory"]
    assert sorted(ALL_JOB_NAMES) == names


def test_each_target_job_selects_exactly_its_asset():
    for spec in TARGET_SPECS.values():
        job = defs.resolve_job_def(spec.job_name)
        assert job.asset_layer.executable_asset_keys == {AssetKey(spec.asset_name)}
        assert job.tags["moodle/target"] == spec.target.value


def test_asset_checks_snapshot():
    checks = sorted(
        f"{key.asset_key.to_user_string()}:{key.name}" for key in defs.resolve_asset_graph().asset_check_keys
    )
    assert checks == [
        "course_catalog:no_rejected_rows",
        "course_catalog:token_sees_everything",
        "enrollments:no_rejected_rows",
        "enrollments:no_unmatched_enrollments",
        "enrollments:token_sees_everything",
        "user_directory:no_rejected_rows",
        "user_directory:token_sees_everything",
    ]


def test_target_parsing_accepts_job_names_and_case():
    assert SyncTarget.parse("enrollments") is SyncTarget.ENROLLMENTS
    assert SyncTarget.parse("sync_course_catalog") is SyncTarget.COURSE_CATALOG
    try:
        SyncTarget.parse("GRADES")
    except ValueError as exc:
        assert "COURSE_CATALOG" in str(exc)
    else:
        raise AssertionError("unknown target accepted")


def test_sensor_and_resource_names_snapshot():
    repo = defs.get_repository_def()
    assert sorted(s.name for s in repo.sensor_defs) == [
        "moodle_run_canceled_sensor", "moodle_run_failure_sensor",
        "moodle_schedule_course_catalog", "moodle_schedule_enrollments", "moodle_schedule_user_directory",
    ]
    assert sorted(defs.resources) == ["app_db", "moodle", "sync_options"]


BREAK_AND_LOAD = """
import sys
sys.modules[{module!r}] = None  # importing it now raises ImportError, as a broken module would
import moodle_assets.definitions
"""


@pytest.mark.parametrize("module", ["sensors.schedule", "sensors.run_status", "moodle_assets.orchestration.assets"])
def test_a_broken_sensor_or_asset_module_fails_the_code_location_load(module):
    """No `except ImportError` around parts of the location: a broken module stops the load
    (the UI shows the error) instead of silently dropping the scheduler."""
    out = subprocess.run([sys.executable, "-c", BREAK_AND_LOAD.format(module=module)], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "ImportError" in out.stderr or "ModuleNotFoundError" in out.stderr


def test_a_bad_setting_fails_the_code_location_load_with_one_line():
    out = subprocess.run([sys.executable, "-c", "import moodle_assets.definitions"], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "MOODLE_RATE_LIMIT_MAX_RETRIES": "lots"})
    assert out.returncode != 0
    assert "MOODLE_RATE_LIMIT_MAX_RETRIES must be a whole number, got 'lots'" in out.stderr
