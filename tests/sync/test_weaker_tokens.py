"""A database filled with a site administrator's token, then synced with a token that sees less:
nothing that exists in Moodle may become inactive or empty. On SQLite and real PostgreSQL.

The cases are the ones found by trying it on a real Moodle 5.0.6+ (issue #16): a token without
the needed capabilities deactivated hidden categories, courses and their enrollments, set every
user's username and ID number to NULL, wiped course ID numbers, inserted the guest as a user,
and reported SUCCESS with 0 enrollments when every course refused it. The emulator reproduces
each capability's effect (tests/emulator/test_fidelity_onboarding.py checks it against the real
captures).
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from moodle_assets.store.db import transaction
from moodle_assets.store.models import CourseCatalog, CourseCategory, User, UserCourseEnrollment
from moodle_assets.sync.access import CoursesRefused
from moodle_assets.sync.engine import sync_course_catalog, sync_enrollments, sync_user_directory
from moodle_assets.sync.fetch import MoodleFetcher
from moodle_assets.sync.options import SyncOptions
from moodle_emulator import EmulatorServer
from resources.moodle import MoodleAccessError, MoodleAccountStateError, MoodleResource

ADMIN = "weaker-tokens-admin-0123456789abcdef"

TOKENS = {
    "reader": "reader",
    "plain": "plain",
    "dedicated": {"preset": "dedicated", "username": "moodlesync"},
    "no_viewdetails": {"preset": "dedicated", "username": "capuser", "without": ["moodle/user:viewdetails"]},
    "no_viewalldetails": {"preset": "dedicated", "username": "capuser", "without": ["moodle/user:viewalldetails"]},
    "no_identity": {"preset": "dedicated", "username": "capuser",
                    "without": ["moodle/site:viewuseridentity", "moodle/user:viewalldetails"]},
    "no_accessallgroups": {"preset": "dedicated", "username": "capuser", "without": ["moodle/site:accessallgroups"]},
    "no_viewhiddencourses": {"preset": "dedicated", "username": "capuser",
                             "without": ["moodle/course:viewhiddencourses"]},
    "no_update_manage": {"preset": "dedicated", "username": "capuser",
                         "without": ["moodle/course:update", "moodle/category:manage"]},
    "no_viewhiddendetails": {"preset": "dedicated", "username": "capuser", "without": ["moodle/user:viewhiddendetails",
                                                                                     "moodle/course:viewhiddenuserfields"]},
    "force_password_change": {"preset": "dedicated", "username": "capuser", "state": "force_password_change"},
    "missing_functions": {"preset": "admin", "functions": ["core_webservice_get_site_info",
                                                           "core_course_get_categories",
                                                           "core_course_get_courses_by_field"]},
}


@pytest.fixture
def moodle():
    tokens = {f"{name}-token-0123456789": spec for name, spec in TOKENS.items()}
    with EmulatorServer(scale="real", token=ADMIN, tokens=tokens) as emu:
        yield emu


@pytest.fixture
def fetchers(moodle):
    made = []

    def fetcher(name: str | None = None) -> MoodleFetcher:
        token = ADMIN if name is None else f"{name}-token-0123456789"
        client = MoodleResource(url=moodle.url, token=token, base_delay_ms=5, max_delay_ms=20).get_client()
        made.append(client)
        return MoodleFetcher(client)

    yield fetcher
    for client in made:
        client.close()


def snapshot(engine) -> dict:
    out = {}
    with transaction(engine) as session:
        for model in (CourseCategory, CourseCatalog, User, UserCourseEnrollment):
            cols = [c.name for c in model.__table__.columns]
            out[model.__tablename__] = sorted(tuple(getattr(r, c) for c in cols) for r in session.scalars(select(model)))
    return out


def rows(engine, model) -> list:
    with transaction(engine) as session:
        found = list(session.scalars(select(model)))
        session.expunge_all()
        return found


def synced_by_admin(engine, fetchers) -> dict:
    options = SyncOptions()
    admin = fetchers()
    for sync in (sync_course_catalog, sync_user_directory, sync_enrollments):
        sync(admin, engine, options)
    return snapshot(engine)


COLUMNS = {
    model.__tablename__: [c.name for c in model.__table__.columns]
    for model in (CourseCategory, CourseCatalog, User, UserCourseEnrollment)
}


def assert_nothing_lost(before: dict, after: dict) -> None:
    """Every row that was active is still active, and no non-empty value became empty."""
    for table, old_rows in before.items():
        new_by_id = {r[0]: r for r in after[table]}
        cols = COLUMNS[table]
        for old in old_rows:
            new = new_by_id[old[0]]
            for name, a, b in zip(cols, old, new, strict=True):
                if name == "synced_at":
                    continue
                if name == "is_active":
                    assert not (a and not b), f"{table} row {old[0]} was deactivated"
                elif a is not None:
                    assert b is not None, f"{table} row {old[0]}: {name} {a!r} became NULL"


# --- COURSE_CATALOG --------------------------------------------------------------------------------


def test_a_reader_keeps_hidden_categories_and_courses_and_their_id_numbers(migrated_engine, fetchers, moodle):
    moodle.mutate([{"op": "hide_category", "category_id": 4}])  # hides category 4 and its courses 5, 7
    before = synced_by_admin(migrated_engine, fetchers)
    outcome = sync_course_catalog(fetchers("reader"), migrated_engine, SyncOptions())
    after = snapshot(migrated_engine)
    assert_nothing_lost(before, after)
    assert outcome.counts.deactivated == 0
    assert outcome.details["categories_kept_unseen"] == 1 and outcome.details["courses_kept_unseen"] == 3
    text = " ".join(outcome.warnings)
    assert "moodle/category:viewhiddencategories" in text and "moodle/course:update" in text
    assert outcome.access.identity.is_site_admin is False
    courses = {c.moodle_course_id: c for c in rows(migrated_engine, CourseCatalog)}
    assert courses[2].id_number == "EXT-PY101" and courses[6].is_active and courses[5].is_active


def test_without_viewhiddencourses_the_hidden_course_and_its_enrollments_stay(migrated_engine, fetchers):
    before = synced_by_admin(migrated_engine, fetchers)
    outcome = sync_course_catalog(fetchers("no_viewhiddencourses"), migrated_engine, SyncOptions())
    assert_nothing_lost(before, snapshot(migrated_engine))
    assert outcome.details["courses_not_visible_to_token"] == 1  # course 6, counted by coursecount
    assert "moodle/course:viewhiddencourses" in " ".join(outcome.warnings)


def test_the_dedicated_role_sees_exactly_what_the_administrator_sees(migrated_engine, fetchers, moodle):
    moodle.mutate([{"op": "hide_category", "category_id": 4}])
    before = synced_by_admin(migrated_engine, fetchers)
    options = SyncOptions()
    results = [f(fetchers("dedicated"), migrated_engine, options)
               for f in (sync_course_catalog, sync_user_directory, sync_enrollments)]
    after = snapshot(migrated_engine)
    assert [r.warnings for r in results] == [[], [], []]
    assert [r.counts.updated for r in results] == [0, 0, 0] and [r.counts.deactivated for r in results] == [0, 0, 0]
    assert after == before  # not one value, not even synced_at


def test_a_removed_course_is_still_deactivated_by_a_token_that_sees_everything(migrated_engine, fetchers, moodle):
    synced_by_admin(migrated_engine, fetchers)
    moodle.mutate([{"op": "remove_course", "course_id": 7}])
    outcome = sync_course_catalog(fetchers("dedicated"), migrated_engine, SyncOptions())
    assert outcome.details["courses_deactivated"] == 1 and not outcome.warnings


def test_an_account_that_cannot_open_the_site_writes_nothing(migrated_engine, fetchers):
    before = synced_by_admin(migrated_engine, fetchers)
    with pytest.raises(MoodleAccountStateError, match="no categories although"):
        sync_course_catalog(fetchers("force_password_change"), migrated_engine, SyncOptions())
    with pytest.raises(MoodleAccountStateError, match="forcepasswordchangenotice"):
        sync_user_directory(fetchers("force_password_change"), migrated_engine, SyncOptions())
    assert snapshot(migrated_engine) == before


def test_a_service_without_the_functions_fails_at_once_naming_them(migrated_engine, fetchers, moodle):
    before = synced_by_admin(migrated_engine, fetchers)
    moodle.counters.reset()
    with pytest.raises(MoodleAccessError) as info:
        sync_user_directory(fetchers("missing_functions"), migrated_engine, SyncOptions())
    assert "core_enrol_get_enrolled_users, core_user_get_users_by_field" in str(info.value)
    assert "External services" in info.value.hint
    assert moodle.counters.snapshot()["requests_total"] == 1  # site info only
    assert snapshot(migrated_engine) == before


# --- USER_DIRECTORY --------------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["reader", "no_viewalldetails", "no_identity", "no_viewhiddendetails"])
def test_fields_a_token_is_not_shown_keep_their_stored_values(token, migrated_engine, fetchers, moodle):
    moodle.set_site(hiddenuserfields=["email", "lastaccess", "firstaccess", "suspended"])
    before = synced_by_admin(migrated_engine, fetchers)
    outcome = sync_user_directory(fetchers(token), migrated_engine, SyncOptions())
    assert_nothing_lost(before, snapshot(migrated_engine))
    users = {u.moodle_user_id: u for u in rows(migrated_engine, User)}
    assert 1 not in users  # the guest, recognised by id although its username is withheld
    assert users[3].username == "alice" and users[3].id_number == "EMP-001" and users[3].email == "alice@example.com"
    assert users[7].is_suspended is True
    assert outcome.counts.deactivated == 0 and outcome.warnings


def test_without_viewdetails_the_unlisted_users_are_kept(migrated_engine, fetchers):
    before = synced_by_admin(migrated_engine, fetchers)
    outcome = sync_user_directory(fetchers("no_viewdetails"), migrated_engine, SyncOptions())
    assert_nothing_lost(before, snapshot(migrated_engine))
    assert outcome.details["user_ids_listed"] == 4  # teachers 8, 9, 13 and the token's own account
    assert outcome.details["users_kept_unseen"] == 12  # of 16: the site's 14 and the two token accounts
    assert "moodle/user:viewdetails" in " ".join(outcome.warnings)


def test_a_plain_token_cannot_list_users_and_fails_before_writing(migrated_engine, fetchers):
    before = synced_by_admin(migrated_engine, fetchers)
    with pytest.raises(MoodleAccessError, match="View participants"):
        sync_user_directory(fetchers("plain"), migrated_engine, SyncOptions())
    assert snapshot(migrated_engine) == before


# --- ENROLLMENTS -----------------------------------------------------------------------------------


@pytest.mark.parametrize("token, capability", [("reader", "moodle/course:enrolreview"),
                                               ("plain", "moodle/course:view")])
def test_when_every_course_refuses_the_run_fails_and_writes_nothing(token, capability, migrated_engine, fetchers):
    before = synced_by_admin(migrated_engine, fetchers)
    with pytest.raises(CoursesRefused) as info:
        sync_enrollments(fetchers(token), migrated_engine, SyncOptions())
    assert "6 of 6 courses refused" in str(info.value) and capability in str(info.value)
    assert snapshot(migrated_engine) == before


def test_a_few_refusing_courses_are_a_warning_under_the_threshold(migrated_engine, fetchers):
    """Course 6 is hidden: a token without viewhiddencourses cannot read it (1 of 6 = 17 %)."""
    before = synced_by_admin(migrated_engine, fetchers)
    with pytest.raises(CoursesRefused, match="1 of 6 courses"):
        sync_enrollments(fetchers("no_viewhiddencourses"), migrated_engine, SyncOptions())
    outcome = sync_enrollments(
        fetchers("no_viewhiddencourses"), migrated_engine, SyncOptions(max_unreadable_course_fraction=0.2)
    )
    assert_nothing_lost(before, snapshot(migrated_engine))
    assert outcome.details["courses_refused"] == 1 and "1 of 6 courses refused" in outcome.warnings[0]


def test_without_viewdetails_students_are_not_taken_for_unenrolled(migrated_engine, fetchers):
    before = synced_by_admin(migrated_engine, fetchers)
    outcome = sync_enrollments(fetchers("no_viewdetails"), migrated_engine, SyncOptions())
    assert_nothing_lost(before, snapshot(migrated_engine))
    assert outcome.access.visibility.all_users is False
    assert outcome.details["enrollments_kept_unseen"] > 10 and "moodle/user:viewdetails" in outcome.warnings[0]


def test_a_separate_groups_course_without_accessallgroups_keeps_its_participants(migrated_engine, fetchers, moodle):
    before = synced_by_admin(migrated_engine, fetchers)
    moodle.mutate([{"op": "set_group_mode", "course_id": 2, "groupmode": 1}])
    outcome = sync_enrollments(fetchers("no_accessallgroups"), migrated_engine, SyncOptions())
    assert_nothing_lost(before, snapshot(migrated_engine))
    assert outcome.access.visibility.all_groups is False
    assert outcome.details["enrollments_kept_unseen"] == 9  # every active enrollment of course 2
    assert "moodle/site:accessallgroups" in outcome.warnings[0]


def test_the_administrator_still_deactivates_what_is_really_gone(migrated_engine, fetchers, moodle):
    synced_by_admin(migrated_engine, fetchers)
    moodle.mutate([{"op": "unenrol", "course_id": 2, "user_id": 3}, {"op": "remove_user", "user_id": 15}])
    users = sync_user_directory(fetchers(), migrated_engine, SyncOptions())
    enrolments = sync_enrollments(fetchers(), migrated_engine, SyncOptions())
    assert users.counts.deactivated == 1 and enrolments.counts.deactivated == 1
    assert users.warnings == [] and enrolments.warnings == []
