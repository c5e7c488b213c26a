"""The product's settings: every environment variable declared once (`model.py`), validated at
start-up, rendered for the README (`reference.py`)."""

from ..core.validation import ConfigError, validate_http_url
from .model import (
    Settings,
    absolute_database_url,
    declared_variables,
    default_data_dir,
    load_settings,
    mask_url_password,
)

__all__ = [
    "ConfigError",
    "Settings",
    "absolute_database_url",
    "declared_variables",
    "default_data_dir",
    "load_settings",
    "mask_url_password",
    "validate_http_url",
]
