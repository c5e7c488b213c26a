"""The error every configuration check raises, and the URL check more than one layer needs."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


class ConfigError(ValueError):
    """A setting is malformed. The message names the setting and is safe to print (no secret)."""


# Moodle directories whose pages people paste after the site address by mistake (the
# web-service endpoint, the login page, the dashboard...). The site's base URL comes before them.
_MOODLE_PAGE_DIRS = ("/webservice/", "/login/", "/admin/", "/my/", "/course/", "/user/")


def _site_base(path: str) -> str | None:
    """The base path of a URL path that points at a Moodle page rather than the site, else None.

    A page is any path with ``/webservice/`` in it or whose last segment is a ``.php`` file."""
    lowered = path.lower()
    if "/webservice/" not in lowered and not lowered.rsplit("/", 1)[-1].endswith(".php"):
        return None
    cuts = [lowered.find(d) for d in _MOODLE_PAGE_DIRS if d in lowered]
    return path[: min(cuts)] if cuts else path.rsplit("/", 1)[0]


def check_http_url(value: str) -> str:
    """The URL without a trailing slash; ValueError (saying what is wrong) unless it is http(s)://host[/path].

    A URL that points at a Moodle page instead of the site (the pasted web-service endpoint
    ``…/webservice/rest/server.php``, the login page, any ``.php``) is refused with the base URL
    to use instead: the client appends the endpoint path itself.
    """
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http:// or https:// URL such as https://lms.example.edu")
    if parts.query or parts.fragment:
        raise ValueError("must be the site's base URL without a query string")
    base = _site_base(parts.path)
    if base is not None:
        suggestion = urlunsplit((parts.scheme, parts.netloc, base.rstrip("/"), "", ""))
        raise ValueError(
            f"must be the site's base URL (its $CFG->wwwroot), not a page of it: use {suggestion} "
            "(the sync adds /webservice/rest/server.php itself)"
        )
    return value.strip().rstrip("/")


def validate_http_url(name: str, value: str) -> str:
    """`check_http_url`, raising `ConfigError` that names the setting."""
    try:
        return check_http_url(value)
    except ValueError as exc:
        raise ConfigError(f"{name} {exc}, got {value!r}") from None
