"""Tunables of the sync engine, read from the environment in one place."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from resources.config import env_float, env_int

from ..settings import Settings


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

    @classmethod
    def from_settings(cls, settings: Settings, env: Mapping[str, str] | None = None) -> "SyncOptions":
        return cls(
            price_field=settings.price_field,
            currency_field=settings.currency_field,
            default_currency=settings.default_currency,
            concurrency=env_int("MOODLE_SYNC_CONCURRENCY", cls.concurrency, minimum=1, maximum=32, env=env),
            enrolment_page_size=env_int("MOODLE_SYNC_ENROLMENT_PAGE_SIZE", cls.enrolment_page_size, minimum=1, maximum=100_000, env=env),
            user_id_page_size=env_int("MOODLE_SYNC_USER_ID_PAGE_SIZE", cls.user_id_page_size, minimum=1, maximum=100_000, env=env),
            user_batch_size=env_int("MOODLE_SYNC_USER_BATCH_SIZE", cls.user_batch_size, minimum=1, maximum=2000, env=env),
            max_deactivate_fraction=env_float("MOODLE_SYNC_MAX_DEACTIVATE_FRACTION", cls.max_deactivate_fraction, minimum=0.0, maximum=1.0, env=env),
            deactivation_guard_min_rows=env_int("MOODLE_SYNC_DEACTIVATE_MIN_ROWS", cls.deactivation_guard_min_rows, minimum=0, env=env),
        )
