"""Reading and validating settings from the environment, in one place.

Every helper raises `ConfigError` with one line that names the variable, what it must be
and what it got, so a bad value fails at start-up rather than deep inside a run. Secret
variables are never echoed back.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit


class ConfigError(ValueError):
    """A setting is malformed. The message names the variable and is safe to print."""


def _raw(name: str, env: Mapping[str, str] | None) -> str | None:
    value = (os.environ if env is None else env).get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def env_str(name: str, default: str | None = None, *, env: Mapping[str, str] | None = None) -> str | None:
    value = _raw(name, env)
    return default if value is None else value


def env_int(
    name: str,
    default: int,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    value = _raw(name, env)
    if value is None:
        return default
    try:
        number = int(value, 10)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {value!r}") from None
    _check_range(name, number, minimum, maximum)
    return number


def env_float(
    name: str,
    default: float,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    env: Mapping[str, str] | None = None,
) -> float:
    value = _raw(name, env)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    _check_range(name, number, minimum, maximum)
    return number


def env_bool(name: str, default: bool, *, env: Mapping[str, str] | None = None) -> bool:
    value = _raw(name, env)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false (1/0, yes/no), got {value!r}")


def validate_http_url(name: str, value: str) -> str:
    """Return the URL without a trailing slash; raise ConfigError unless it is http(s)://host[...]."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name} must be an http:// or https:// URL such as https://lms.example.edu, got {value!r}")
    if parts.query or parts.fragment:
        raise ConfigError(f"{name} must be the site's base URL without a query string, got {value!r}")
    return value.rstrip("/")


def _check_range(name: str, number: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and number < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise ConfigError(f"{name} must be <= {maximum}, got {number}")
