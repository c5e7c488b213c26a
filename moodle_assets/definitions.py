"""The Dagster code location `moodle_integration`: assets, jobs, sensors and resources.

Settings are read and validated once, here, when the code location loads (a bad value stops
the load with one line naming the variable); resources receive them as fields. Every module
is imported at the top: a broken sensor or asset module fails the load loudly instead of
silently dropping part of the location.
"""

from __future__ import annotations

from dagster import Definitions, EnvVar

from resources.app_db import AppDatabaseResource
from resources.moodle import MoodleResource
from sensors import build_sensors

from .orchestration.assets import ASSETS
from .orchestration.jobs import ALL_JOBS
from .orchestration.resources import SyncOptionsResource
from .settings import Settings, load_settings


def build_definitions(settings: Settings) -> Definitions:
    """The code location for `settings`. Secrets (the token, a database URL with a password) go
    in as `EnvVar`s, so only the variables' names reach Dagster's run storage, never their values."""
    database_url = EnvVar("DATABASE_URL") if settings.database_url_has_password else settings.database_url
    return Definitions(
        assets=ASSETS,
        jobs=ALL_JOBS,
        sensors=build_sensors(tick_seconds=settings.sensor_interval_seconds),
        resources={
            "moodle": MoodleResource(
                url=EnvVar("MOODLE_URL"),
                token=EnvVar("MOODLE_TOKEN"),
                max_retries=settings.max_retries,
                base_delay_ms=settings.base_delay_ms,
                max_delay_ms=settings.max_delay_ms,
                requests_per_second=settings.requests_per_second,
                throttle_burst=settings.throttle_burst,
                retry_after_cap_ms=settings.retry_after_cap_ms,
                connect_timeout_s=settings.connect_timeout_s,
                read_timeout_s=settings.read_timeout_s,
                pool_size=settings.pool_size,
                throttle_dir=str(settings.throttle_dir) if settings.throttle_dir else None,
                ratelimit_errorcode_pattern=settings.ratelimit_errorcode_pattern,
                ratelimit_message_pattern=settings.ratelimit_message_pattern,
            ),
            "app_db": AppDatabaseResource(
                url=database_url,
                heartbeat_timeout_seconds=settings.heartbeat_timeout_seconds,
            ),
            "sync_options": SyncOptionsResource(
                price_field=settings.price_field,
                currency_field=settings.currency_field,
                default_currency=settings.default_currency,
                concurrency=settings.concurrency,
                enrolment_page_size=settings.enrolment_page_size,
                user_id_page_size=settings.user_id_page_size,
                user_batch_size=settings.user_batch_size,
                max_deactivate_fraction=settings.max_deactivate_fraction,
                deactivation_guard_min_rows=settings.deactivate_min_rows,
                max_unreadable_course_fraction=settings.max_unreadable_course_fraction,
                changelog_retention_days=settings.changelog_retention_days,
            ),
        },
    )


defs = build_definitions(load_settings())
