"""The error every configuration check raises, and the URL check more than one layer needs."""

from __future__ import annotations

from urllib.parse import urlsplit


class ConfigError(ValueError):
    """A setting is malformed. The message names the setting and is safe to print (no secret)."""


def check_http_url(value: str) -> str:
    """The URL without a trailing slash; ValueError (saying what is wrong) unless it is http(s)://host[/path]."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http:// or https:// URL such as https://lms.example.edu")
    if parts.query or parts.fragment:
        raise ValueError("must be the site's base URL without a query string")
    return value.strip().rstrip("/")


def validate_http_url(name: str, value: str) -> str:
    """`check_http_url`, raising `ConfigError` that names the setting."""
    try:
        return check_http_url(value)
    except ValueError as exc:
        raise ConfigError(f"{name} {exc}, got {value!r}") from None
