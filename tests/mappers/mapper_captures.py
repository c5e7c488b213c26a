"""Locate and classify the real Moodle captures in ``../shared/real-moodle/fixtures``.

The captures live outside the repository: CI runs a clean clone with ``shared/`` as a
sibling of the clone directory (like /work/main/../shared). ``MOODLE_REAL_FIXTURES`` can
point elsewhere.
"""
from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DIR = REPO_ROOT.parent / "shared" / "real-moodle" / "fixtures"


def fixtures_dir() -> Path:
    path = Path(os.environ.get("MOODLE_REAL_FIXTURES") or DEFAULT_DIR)
    if not path.is_dir() or not any(path.glob("*.json")):
        pytest.fail(
            f"real Moodle captures not found at {path}: check out the shared/ directory as a "
            f"sibling of the repository ({REPO_ROOT.parent}/shared/real-moodle/fixtures) or "
            "set MOODLE_REAL_FIXTURES",
            pytrace=False,
        )
    return path


def fixture_names() -> list[str]:
    """Every capture name (without .json); [] when missing so collection still works."""
    path = Path(os.environ.get("MOODLE_REAL_FIXTURES") or DEFAULT_DIR)
    return sorted(p.stem for p in path.glob("*.json") if not p.name.startswith("_"))


@cache
def load(name: str) -> dict:
    """The capture: {"request": {...}, "status": int, "headers": {...}, "body_raw": str}."""
    return json.loads((fixtures_dir() / f"{name}.json").read_text(encoding="utf-8"))


def body(name: str):
    """The decoded JSON body, or None when the body is not JSON (XML, empty 403)."""
    raw = load(name)["body_raw"]
    try:
        return json.loads(raw)
    except ValueError:
        return None


def wsfunction(name: str) -> str | None:
    return load(name)["request"].get("params", {}).get("wsfunction")


def params(name: str) -> dict:
    return load(name)["request"].get("params", {})


def is_error(name: str) -> bool:
    data = body(name)
    return data is None or (isinstance(data, dict) and "exception" in data)


# What each web-service function's rows are, for the mappers.
CATEGORY_FUNCTIONS = {"core_course_get_categories"}
COURSE_FUNCTIONS = {"core_course_get_courses", "core_course_get_courses_by_field", "core_enrol_get_users_courses"}
USER_FUNCTIONS = {"core_user_get_users", "core_user_get_users_by_field"}
ENROLMENT_FUNCTIONS = {"core_enrol_get_enrolled_users"}
NOT_ROWS = {"core_webservice_get_site_info"}


def rows(name: str) -> list:
    """The list of row objects in a successful capture."""
    data = body(name)
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        for key in ("courses", "users"):
            if key in data:
                return data[key]
    raise AssertionError(f"{name}: no row list in the body")
