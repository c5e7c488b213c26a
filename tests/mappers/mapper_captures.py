"""Locate and classify the real Moodle captures in ``tests/fixtures/real-moodle``.

The captures are committed with the tests (where they come from: that folder's README);
``fixture_paths`` finds them and turns a missing one into a failure, never a skip.
"""
from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from fixture_paths import real_moodle_dir, real_moodle_names, real_moodle_path


def fixtures_dir() -> Path:
    return real_moodle_dir()


def fixture_names() -> list[str]:
    """Every capture name (without .json); raises at collection when the captures are missing."""
    return real_moodle_names()


@cache
def load(name: str) -> dict:
    """The capture: {"request": {...}, "status": int, "headers": {...}, "body_raw": str}."""
    return json.loads(real_moodle_path(name).read_text(encoding="utf-8"))


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
