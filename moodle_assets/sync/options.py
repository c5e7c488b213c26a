"""Tunables of the sync engine, with their defaults (set from the environment by `moodle_assets.settings`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SyncOptions:
    price_field: str = "price"
    currency_field: str = "currency"
    default_currency: str | None = None
    # Courses whose enrolments are fetched at once (all share the host-wide rate budget).
    concurrency: int = 4
    # Rows per page of core_enrol_get_enrolled_users (active / not-active passes). Each row is
    # three small fields (~100 bytes of JSON), so 5000 is ~0.5 MB a page; large enough that
    # nearly every course is one request per pass (the API minimum), which at scale L (500
    # enrolments a course on average) saved ~160 extra pages against 1000.
    enrolment_page_size: int = 5000
    # Rows per page when listing every user id (site-course participants, userfields=id): ids
    # only, so a page of 20,000 is ~0.3 MB of JSON and little PHP memory.
    user_id_page_size: int = 20000
    # Users per core_user_get_users_by_field request. Moodle spends ~3.5 ms per user, so 1000
    # keeps each request near 3.5 s of server time, far inside any proxy timeout (60 s is
    # common) and far below PHP's max_input_vars (5000 form fields); half the requests of 500.
    user_batch_size: int = 1000
    max_deactivate_fraction: float = 0.25
    deactivation_guard_min_rows: int = 10
    # ENROLLMENTS: a run in which more than this share of the catalog's courses refuse to show
    # their participants to the token fails (nothing written); a smaller share succeeds with a
    # warning, those courses' enrolments kept as they were.
    max_unreadable_course_fraction: float = 0.1
    # Days the change log (integration_change_log) keeps its rows; 0 turns the change log off.
    changelog_retention_days: int = 90
