"""Rows a weaker token gets from a real Moodle 5.0.6+ (tests/fixtures/real-moodle): every key
Moodle left out is withheld in the record, the guest is skipped by id, and nothing is read as
"empty" that was only "not shown"."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from moodle_assets.mappers import map_moodle_category_row, map_moodle_course_row, map_moodle_user_row, map_rows

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "real-moodle"
T = datetime(2026, 11, 28, tzinfo=UTC)


def body(name: str):
    return json.loads(json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))["body_raw"])


def test_users_without_viewalldetails_keep_username_and_idnumber_unknown():
    batch = map_rows(map_moodle_user_row, body("users_by_field_no_viewalldetails"), synced_at=T)
    assert batch.skipped == 1 and batch.skipped_rows[0].moodle_id == 1  # the guest, without its username
    by_id = {r.moodle_user_id: r for r in batch.records}
    alice = by_id[3]
    assert alice.username is None and {"username", "id_number"} <= alice.withheld
    assert alice.email == "alice@example.com" and "email" not in alice.withheld
    capuser = by_id[17]  # the token's own account: Moodle shows it everything
    assert capuser.username == "capuser" and "username" not in capuser.withheld


def test_users_without_identity_capabilities_keep_email_unknown():
    batch = map_rows(map_moodle_user_row, body("users_by_field_no_viewuseridentity"), synced_at=T)
    by_id = {r.moodle_user_id: r for r in batch.records}
    assert by_id[3].email is None and "email" in by_id[3].withheld
    assert by_id[14].username == "noemailuser"


def test_hidden_user_fields_are_withheld_not_false():
    batch = map_rows(map_moodle_user_row, body("users_by_field_hiddenuserfields_no_viewhiddendetails"), synced_at=T)
    alice = {r.moodle_user_id: r for r in batch.records}[3]
    assert alice.is_suspended is None and {"is_suspended", "last_access_at", "email"} <= alice.withheld


def test_the_dedicated_role_sees_everything():
    users = map_rows(map_moodle_user_row, body("dedicated_users_by_field"), synced_at=T)
    assert users.skipped == 1 and not users.rejected
    no_idnumber = {r.moodle_user_id: r for r in users.records}[5]  # jose.muller has none
    assert no_idnumber.id_number is None and not no_idnumber.withheld  # known to be empty
    courses = map_rows(map_moodle_course_row, body("dedicated_get_courses_by_field")["courses"], synced_at=T)
    assert courses.skipped == 1 and all(not c.withheld for c in courses.records)
    categories = map_rows(map_moodle_category_row, body("dedicated_get_categories"), synced_at=T)
    assert all(not c.withheld for c in categories.records)


def test_courses_without_course_view_or_update_keep_those_fields_unknown():
    no_view = map_rows(map_moodle_course_row, body("courses_by_field_no_course_view")["courses"], synced_at=T)
    py101 = {c.moodle_course_id: c for c in no_view.records}[2]
    assert py101.is_visible is None and {"is_visible", "start_at", "end_at", "id_number"} <= py101.withheld
    assert py101.price is not None and "price" not in py101.withheld
    no_update = map_rows(map_moodle_course_row, body("courses_by_field_no_course_update")["courses"], synced_at=T)
    assert all(c.withheld == {"id_number"} for c in no_update.records)


def test_categories_without_manage_keep_visibility_unknown():
    batch = map_rows(map_moodle_category_row, body("categories_no_category_manage"), synced_at=T)
    assert batch.records and all(c.withheld == {"is_visible"} and c.is_visible is None for c in batch.records)
