"""The committed real Moodle captures are all there, all listed, and a missing one fails."""
from __future__ import annotations

import json

import pytest
from fixture_paths import (
    REAL_MOODLE_FIXTURES,
    manifest_names,
    real_moodle_names,
    real_moodle_path,
)


def manifests() -> list[str]:
    return sorted(p.stem for p in REAL_MOODLE_FIXTURES.glob("_index*.json"))


def test_the_base_set_is_in_the_repository():
    assert (REAL_MOODLE_FIXTURES / "README.md").is_file()
    assert "_index" in manifests()
    assert len(real_moodle_names()) >= 70


def test_every_listed_capture_exists_and_is_a_capture():
    for manifest in manifests():
        for name in manifest_names(manifest):
            fx = json.loads(real_moodle_path(name).read_text(encoding="utf-8"))
            assert {"request", "status", "headers", "body_raw"} <= set(fx), name


def test_every_capture_file_is_listed_by_a_manifest():
    listed = [name for manifest in manifests() for name in manifest_names(manifest)]
    assert len(listed) == len(set(listed)), "a capture is listed twice"
    files = {p.stem for p in REAL_MOODLE_FIXTURES.glob("*.json") if not p.stem.startswith("_")}
    assert not files - set(listed), f"not in any _index*.json: {sorted(files - set(listed))}"


def test_a_missing_capture_fails_instead_of_skipping():
    with pytest.raises(pytest.fail.Exception, match="is missing"):
        real_moodle_path("no_such_capture")
