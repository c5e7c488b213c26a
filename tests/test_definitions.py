"""The code location loads, and its public names do not drift (GraphQL callers use them)."""
from __future__ import annotations

from dagster import AssetKey

from moodle_assets.definitions import defs
from moodle_assets.core.targets import ALL_JOB_NAMES, TARGET_SPECS, SyncTarget


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
        "enrollments:no_rejected_rows",
        "enrollments:no_unmatched_enrollments",
        "user_directory:no_rejected_rows",
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
