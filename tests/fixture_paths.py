"""Where the tests find the data committed with them: one place, used by every helper.

The real Moodle captures live in the repository (``tests/fixtures/real-moodle/``; see the
README there), so a plain clone runs the whole suite. A capture that is missing is a test
failure with the path in the message, never a skip.

The folder can hold several capture sets, each listed by its own manifest
(``_index.json`` for the base set, ``_index_<set>.json`` for others). "Every capture"
means every capture of the base set's manifest, not every file in the folder: a capture
from another set (a weaker token, another site state) is not expected to match the base
site's emulator or mapper expectations.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_MOODLE_FIXTURES = REPO_ROOT / "tests" / "fixtures" / "real-moodle"
BASE_MANIFEST = "_index"


def _missing(what: str) -> None:
    pytest.fail(
        f"{what} is missing: the real Moodle captures are committed under "
        f"{REAL_MOODLE_FIXTURES.relative_to(REPO_ROOT)}/ (see its README.md); restore them from git",
        pytrace=False,
    )


def real_moodle_dir() -> Path:
    """The captures' folder; fails the calling test (or collection) when it is absent or empty."""
    if not REAL_MOODLE_FIXTURES.is_dir() or not any(REAL_MOODLE_FIXTURES.glob("*.json")):
        _missing(str(REAL_MOODLE_FIXTURES))
    return REAL_MOODLE_FIXTURES


def real_moodle_path(name: str) -> Path:
    """The file of capture ``name`` (without ``.json``); fails when it does not exist."""
    path = real_moodle_dir() / f"{name}.json"
    if not path.is_file():
        _missing(str(path))
    return path


def manifest_names(manifest: str = BASE_MANIFEST) -> list[str]:
    """The capture names a manifest (``_index``, ``_index_<set>``) lists, in its order."""
    entries = json.loads(real_moodle_path(manifest).read_text(encoding="utf-8"))
    return [entry["name"] for entry in entries]


def real_moodle_names() -> list[str]:
    """Every capture of the base set (``_index.json``), sorted.

    Called at collection time for ``parametrize``: when the folder or the manifest is gone
    this raises, so the module errors at collection instead of collecting an empty (skipped)
    parameter set. A listed capture whose file is missing fails the test that loads it.
    """
    names = sorted(manifest_names())
    if not names:
        _missing(f"the capture list in {REAL_MOODLE_FIXTURES / (BASE_MANIFEST + '.json')}")
    return names
