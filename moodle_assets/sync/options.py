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
    # Rows per page of core_enrol_get_enrolled_users (active / not-active passes).
    enrolment_page_size: int = 1000
    # Rows per page when listing every user id (site-course participants, userfields=id).
    user_id_page_size: int = 5000
    # Users per core_user_get_users_by_field request. Moodle spends ~3.5 ms per user, so 500
    # keeps each request near 2 s of server time, far inside any proxy timeout, and far
    # below PHP's max_input_vars (5000 form fields).
    user_batch_size: int = 500
    max_deactivate_fraction: float = 0.25
    deactivation_guard_min_rows: int = 10
    # ENROLLMENTS: a run in which more than this share of the catalog's courses refuse to show
    # their participants to the token fails (nothing written); a smaller share succeeds with a
    # warning, those courses' enrolments kept as they were.
    max_unreadable_course_fraction: float = 0.1
    # Days the change log (integration_change_log) keeps its rows; 0 turns the change log off.
    changelog_retention_days: int = 90
