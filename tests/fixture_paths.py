"""Where the tests find the data committed with them: one place, used by every helper.

The real Moodle captures live in the repository (``tests/fixtures/real-moodle/``; see the
README there), so a plain clone runs the whole suite. A capture that is missing is a test
failure with the path in the message, never a skip.
"""
from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_MOODLE_FIXTURES = REPO_ROOT / "tests" / "fixtures" / "real-moodle"


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


def real_moodle_names() -> list[str]:
    """Every capture name (without ``.json``, ``_index`` excluded), sorted.

    Called at collection time for ``parametrize``: when the folder is gone this raises, so
    the module errors at collection instead of collecting an empty (skipped) parameter set.
    """
    names = sorted(p.stem for p in real_moodle_dir().glob("*.json") if not p.stem.startswith("_"))
    if not names:
        _missing(f"every capture in {REAL_MOODLE_FIXTURES}")
    return names
