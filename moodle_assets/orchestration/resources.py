"""Dagster resources of the sync that are not about an outside system: the sync's tunables."""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field

from ..sync.options import SyncOptions

_DEFAULTS = SyncOptions()


class SyncOptionsResource(ConfigurableResource):
    """The sync engine's tunables (`SyncOptions`), bound in `definitions.py` from the settings."""

    price_field: str = Field(default=_DEFAULTS.price_field)
    currency_field: str = Field(default=_DEFAULTS.currency_field)
    default_currency: str | None = Field(default=_DEFAULTS.default_currency)
    concurrency: int = Field(default=_DEFAULTS.concurrency)
    enrolment_page_size: int = Field(default=_DEFAULTS.enrolment_page_size)
    user_id_page_size: int = Field(default=_DEFAULTS.user_id_page_size)
    user_batch_size: int = Field(default=_DEFAULTS.user_batch_size)
    max_deactivate_fraction: float = Field(default=_DEFAULTS.max_deactivate_fraction)
    deactivation_guard_min_rows: int = Field(default=_DEFAULTS.deactivation_guard_min_rows)
    max_unreadable_course_fraction: float = Field(default=_DEFAULTS.max_unreadable_course_fraction)
    changelog_retention_days: int = Field(default=_DEFAULTS.changelog_retention_days)

    def options(self) -> SyncOptions:
        return SyncOptions(**{name: getattr(self, name) for name in SyncOptions.__dataclass_fields__})
