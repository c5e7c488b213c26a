"""The Moodle HTTP client (no Dagster here): ``MoodleClient`` and its helpers.

The public entry point is ``resources.moodle`` (the Dagster ``MoodleResource`` plus
re-exports of everything below); see its docstring for the design. This module is kept free
of Dagster so that a plain process (the benchmark, a worker script) imports it in
milliseconds.
"""

from __future__ import annotations

import errno
import functools
import http.client
import logging
import math
import os
import random
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import certifi
import requests
import urllib3
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from urllib3.exceptions import (
    ConnectTimeoutError,
    DecodeError,
    LocationValueError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ProxySchemeUnknown,
    ReadTimeoutError,
    SSLError,
    URLSchemeUnknown,
)

from moodle_assets.core.validation import ConfigError, validate_http_url
from resources.moodle_errors import (
    DEFAULT_RATELIMIT_ERRORCODE_PATTERN,
    DEFAULT_RATELIMIT_MESSAGE_PATTERN,
    ENDPOINT_PATH,
    MoodleError,
    MoodleNetworkError,
    MoodleTransientError,
    MoodleUnknownError,
    classify_response,
    raise_for_warnings,
    scrub,
)
from resources.retry import RetryAfterTooLong, check_retry_after, parse_retry_after, retry_wait
from resources.throttle import HostThrottle, default_throttle_dir

# Logged under the public module's name, where operators look for it.
logger = logging.getLogger("resources.moodle")

# Defaults of the client's tunables (their environment variables: moodle_assets.settings).
DEFAULT_MAX_RETRIES = 3
DEFAULT_BASE_DELAY_MS = 600
DEFAULT_MAX_DELAY_MS = 8000
DEFAULT_RPS = 5.0
DEFAULT_RETRY_AFTER_CAP_MS = 60_000
DEFAULT_CONNECT_TIMEOUT_S = 10.0
DEFAULT_READ_TIMEOUT_S = 120.0  # core_user_get_users on 20k users takes ~70 s (docs/moodle-facts.md §11)
DEFAULT_POOL_SIZE = 8
# Fraction of the allowed rate kept in reserve so request *arrivals* (start + network jitter)
# do not bunch up against a proxy bucket of exactly the allowed rate
# (benchmarks/results/client-throttle.md).
DEFAULT_THROTTLE_MARGIN = 0.02
# Requests the throttle may run ahead of the nominal spacing to make up a late start (GCRA
# burst tolerance, resources/throttle.py); 0 = strict spacing (for a strict burst-1 proxy).
# 1 needs a proxy bucket of >= 2 (the trade-off: benchmarks/results/client-throttle.md).
DEFAULT_THROTTLE_BURST = 1.0
# A throttle wait at least this long is logged (INFO; shorter ones are the normal spacing).
THROTTLE_LOG_SECONDS = 1.0


# --- parameter encoding --------------------------------------------------------------


def _scalar(value: Any) -> str:
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "1" if value else "0"
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def encode_params(params: Mapping[str, Any] | None, prefix: str = "") -> list[tuple[str, str]]:
    """Flatten nested params into PHP bracket-array form fields, in order.

    ``{"options": [{"name": "onlyactive", "value": True}]}`` →
    ``[("options[0][name]", "onlyactive"), ("options[0][value]", "1")]``. Dicts and lists
    (and tuples) nest to any depth; booleans become 1/0 (Moodle's PARAM_BOOL rejects "true");
    ``None`` becomes an empty value. Percent-encoding is ``form_body``'s (``%`` → ``%25``).
    """
    out: list[tuple[str, str]] = []
    if not params:
        return out

    def walk(key: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(f"{key}[{k}]", v)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(f"{key}[{i}]", v)
        else:
            out.append((key, _scalar(value)))

    for k, v in params.items():
        walk(f"{prefix}[{k}]" if prefix else str(k), v)
    return out


# Field names and values repeat from call to call (``options[0][name]``, ``onlyactive``...):
# quoting each once is ~10x faster than urlencode's per-call quoting. The token never goes in here.
_quote = functools.lru_cache(maxsize=4096)(urllib.parse.quote_plus)


def form_body(fields: Sequence[tuple[str, str]]) -> str:
    """``application/x-www-form-urlencoded`` text of ``fields``, in order: UTF-8, ``quote_plus``
    (space → ``+``), exactly what ``urllib.parse.urlencode`` and requests (``data=``/``params=``
    lists of pairs) make of them."""
    return "&".join([f"{_quote(k)}={_quote(v)}" for k, v in fields])


# --- metrics -------------------------------------------------------------------------


class ClientMetrics:
    """Thread-safe counters for one client. ``snapshot()`` is a plain, JSON-able dict."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with getattr(self, "_lock", threading.Lock()):
            self._calls = 0
            self._requests = 0
            self._by_function: Counter[str] = Counter()
            self._retries = 0
            self._responses_429 = 0
            self._ratelimit_payloads = 0
            self._backoff_seconds = 0.0
            self._throttle_seconds = 0.0
            self._failures: Counter[str] = Counter()

    def call(self) -> None:
        with self._lock:
            self._calls += 1

    def request(self, wsfunction: str) -> None:
        with self._lock:
            self._requests += 1
            self._by_function[wsfunction] += 1

    def retry(self, seconds: float) -> None:
        with self._lock:
            self._retries += 1
            self._backoff_seconds += seconds

    def got_429(self) -> None:
        with self._lock:
            self._responses_429 += 1

    def got_ratelimit_payload(self) -> None:
        with self._lock:
            self._ratelimit_payloads += 1

    def throttled(self, seconds: float) -> None:
        if seconds > 0:
            with self._lock:
                self._throttle_seconds += seconds

    def failure(self, kind: str) -> None:
        with self._lock:
            self._failures[kind] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "calls_total": self._calls,
                "requests_total": self._requests,
                "requests_by_function": dict(sorted(self._by_function.items())),
                "retries": self._retries,
                "responses_429": self._responses_429,
                "ratelimit_payloads": self._ratelimit_payloads,
                "backoff_seconds": round(self._backoff_seconds, 3),
                "throttle_wait_seconds": round(self._throttle_seconds, 3),
                "failures_by_kind": dict(sorted(self._failures.items())),
            }


# --- settings ------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientSettings:
    """The client's tunables with their defaults (the environment variables that set them are
    declared in ``moodle_assets.settings``, whose values the resource passes in). Validated on
    construction: a bad value raises ``ConfigError`` naming the field."""

    url: str
    max_retries: int = DEFAULT_MAX_RETRIES
    base_delay_ms: int = DEFAULT_BASE_DELAY_MS
    max_delay_ms: int = DEFAULT_MAX_DELAY_MS
    requests_per_second: float = DEFAULT_RPS
    retry_after_cap_ms: int = DEFAULT_RETRY_AFTER_CAP_MS
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S
    pool_size: int = DEFAULT_POOL_SIZE
    throttle_dir: str | None = None  # None: default_throttle_dir()
    throttle_margin: float = DEFAULT_THROTTLE_MARGIN
    throttle_burst: float = DEFAULT_THROTTLE_BURST
    ratelimit_errorcode_pattern: str = DEFAULT_RATELIMIT_ERRORCODE_PATTERN
    ratelimit_message_pattern: str = DEFAULT_RATELIMIT_MESSAGE_PATTERN
    ratelimit_errorcode: re.Pattern[str] = field(init=False, repr=False, compare=False)
    ratelimit_message: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise in place, once
        set_(self, "url", validate_http_url("MOODLE_URL", self.url))
        for name, low in _INT_MINIMUMS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name} must be a whole number >= {low}, got {value!r}")
        for name, floor, strict in _FLOAT_MINIMUMS:
            value = getattr(self, name)
            number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
            if not math.isfinite(number) or number < floor or (strict and number <= floor):
                raise ConfigError(f"{name} must be a number {'>' if strict else '>='} {floor:g}, got {value!r}")
            set_(self, name, number)
        if self.max_delay_ms < self.base_delay_ms:
            raise ConfigError(f"max_delay_ms ({self.max_delay_ms}) must be >= base_delay_ms ({self.base_delay_ms})")
        if not 0.0 <= self.throttle_margin < 1.0:
            raise ConfigError(f"throttle_margin must be in [0, 1), got {self.throttle_margin}")
        set_(self, "throttle_dir", str(self.throttle_dir or default_throttle_dir()))
        for name in ("ratelimit_errorcode", "ratelimit_message"):
            text = getattr(self, f"{name}_pattern")
            try:
                set_(self, name, re.compile(text))
            except re.error as exc:
                raise ConfigError(f"{name}_pattern must be a regular expression, got {text!r} ({exc})") from None

    @property
    def effective_rps(self) -> float:
        return self.requests_per_second * (1.0 - self.throttle_margin)

    def describe(self) -> dict[str, Any]:
        """Non-secret settings, e.g. for run metadata."""
        return {
            "url": self.url,
            "max_retries": self.max_retries,
            "base_delay_ms": self.base_delay_ms,
            "max_delay_ms": self.max_delay_ms,
            "requests_per_second": self.requests_per_second,
            "retry_after_cap_ms": self.retry_after_cap_ms,
            "connect_timeout_s": self.connect_timeout_s,
            "read_timeout_s": self.read_timeout_s,
            "pool_size": self.pool_size,
            "throttle_burst": self.throttle_burst,
        }


_INT_MINIMUMS = (
    ("max_retries", 0),
    ("base_delay_ms", 0),
    ("max_delay_ms", 0),
    ("retry_after_cap_ms", 0),
    ("pool_size", 1),
)
_FLOAT_MINIMUMS = (
    ("requests_per_second", 0.0, False),
    ("connect_timeout_s", 0.0, True),
    ("read_timeout_s", 0.0, True),
    ("throttle_burst", 0.0, False),
)


# --- logging hygiene -------------------------------------------------------------------


class _ScrubTokenFilter(logging.Filter):
    """urllib3 logs request lines (GET URLs include ``wstoken=``) at DEBUG: scrub them."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # pragma: no cover - malformed record, leave it
            return True
        if "token" in text.lower():
            record.msg = scrub(text)
            record.args = ()
        return True


_FILTER_INSTALLED = False
_FILTER_LOCK = threading.Lock()


def _install_log_scrubber() -> None:
    global _FILTER_INSTALLED
    with _FILTER_LOCK:
        if _FILTER_INSTALLED:
            return
        for name in ("urllib3.connectionpool", "urllib3.connection", "urllib3.poolmanager", "urllib3.util.retry"):
            logging.getLogger(name).addFilter(_ScrubTokenFilter())
        _FILTER_INSTALLED = True


# --- the client ----------------------------------------------------------------------


@runtime_checkable
class MoodleApi(Protocol):
    """What callers need from a Moodle client (any implementation will do)."""

    def webservice_post(self, wsfunction: str, params: Mapping[str, Any] | None = None, **kwargs: Any) -> Any: ...

    def webservice_get(self, wsfunction: str, params: Mapping[str, Any] | None = None, **kwargs: Any) -> Any: ...


# Headers of every request: requests' defaults (its User-Agent replaced) so the site sees what it saw
# before the transport moved onto urllib3; compressed answers are decoded by urllib3.
_BASE_HEADERS = {
    "User-Agent": "moodle-integration/0.1",
    "Accept-Encoding": requests.utils.default_headers()["Accept-Encoding"],
    "Accept": "application/json",
    "Connection": "keep-alive",
}
_FORM = "application/x-www-form-urlencoded"


def _pool_manager(endpoint: str, pool_size: int) -> urllib3.PoolManager:
    """One connection pool for ``endpoint``, set up from the environment the way requests read it:
    the proxy for the endpoint (``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``ALL_PROXY``, honouring
    ``NO_PROXY``), the CA bundle (``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE``, else certifi's).
    Certificates are always verified; nothing is retried or redirected by urllib3."""
    session = requests.Session()  # only requests' reading of the environment, never a request
    try:
        environment = session.merge_environment_settings(endpoint, {}, None, None, None)
    finally:
        session.close()
    verify = environment["verify"]
    ca_bundle = verify if isinstance(verify, str) else certifi.where()
    tls: dict[str, Any] = {"cert_reqs": "CERT_REQUIRED"}
    if os.path.isdir(ca_bundle):
        tls["ca_cert_dir"] = ca_bundle
    else:
        tls["ca_certs"] = ca_bundle
    pool: dict[str, Any] = {"maxsize": pool_size, "block": True, "retries": False, **tls}
    proxy = requests.utils.select_proxy(endpoint, environment["proxies"])
    if not proxy:
        return urllib3.PoolManager(num_pools=1, **pool)
    proxy = requests.utils.prepend_scheme_if_needed(proxy, "http")
    if proxy.lower().startswith("socks"):
        raise ConfigError(
            f"the environment's proxy for {endpoint} is a SOCKS proxy ({_scrub_userinfo(proxy)}), which the "
            "Moodle client does not support: use an HTTP proxy, or exclude the site in NO_PROXY"
        )
    user, password = requests.utils.get_auth_from_url(proxy)
    headers = urllib3.util.make_headers(proxy_basic_auth=f"{user}:{password}") if user else None
    try:
        return urllib3.ProxyManager(proxy, num_pools=1, proxy_headers=headers, **pool)
    except (ProxySchemeUnknown, LocationValueError) as exc:
        raise ConfigError(
            f"the environment's proxy for {endpoint} ({_scrub_userinfo(proxy)}) is not a usable proxy URL: "
            f"{type(exc).__name__}; fix HTTPS_PROXY / HTTP_PROXY / ALL_PROXY, or exclude the site in NO_PROXY"
        ) from None


def _scrub_userinfo(url: str) -> str:
    """``url`` without a ``user:password@`` part."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return parts._replace(netloc=netloc).geturl()


class MoodleClient:
    """HTTP client for Moodle's REST web services. Thread-safe; one per site (per run)."""

    def __init__(
        self,
        url: str,
        token: str,
        settings: ClientSettings | None = None,
        *,
        sleep=time.sleep,
        rng=random.random,
        **overrides: Any,
    ) -> None:
        if not isinstance(token, str) or not token.strip():
            raise ConfigError("MOODLE_TOKEN is not set (it must be the site's web-service token)")
        if settings is not None and overrides:
            raise TypeError("give either settings or keyword overrides, not both")
        self.settings = settings or ClientSettings(url, **overrides)
        self._token = token.strip()
        self._token_field = urllib.parse.urlencode([("wstoken", self._token)]) + "&"  # first in every request
        self.endpoint = self.settings.url + ENDPOINT_PATH
        self.metrics = ClientMetrics()
        self._sleep = sleep
        self._rng = rng
        self.throttle = HostThrottle(
            self.settings.url,
            self.settings.effective_rps,
            self.settings.throttle_dir,
            burst=self.settings.throttle_burst,
        )
        # The transport is urllib3 itself, not requests: requests' per-call work (preparing the
        # request, encoding the form, hooks, reading the body in 10 KB chunks) was ~60% of the
        # client's CPU in a sync (issue 19). The environment (proxy, CA bundle, ~/.netrc) is read
        # once here through requests' own helpers, so it means what it meant with requests.
        self._http = _pool_manager(self.endpoint, self.settings.pool_size)
        self._timeout = urllib3.Timeout(connect=self.settings.connect_timeout_s, read=self.settings.read_timeout_s)
        # Built once: urllib3 converts (and DEBUG-logs) a bare False on every request.
        self._no_retries = urllib3.Retry(False, redirect=False)
        headers = dict(_BASE_HEADERS)
        netrc_auth = requests.utils.get_netrc_auth(self.endpoint)
        if netrc_auth:
            headers.update(urllib3.util.make_headers(basic_auth=f"{netrc_auth[0]}:{netrc_auth[1]}"))
        self._get_headers = headers
        self._post_headers = {**headers, "Content-Type": _FORM}
        _install_log_scrubber()

    def __repr__(self) -> str:
        return f"MoodleClient(url={self.settings.url!r})"

    # lifecycle
    def close(self) -> None:
        self._http.clear()

    def __enter__(self) -> MoodleClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def snapshot(self) -> dict[str, Any]:
        return self.metrics.snapshot()

    # public calls
    def webservice_post(self, wsfunction: str, params: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        """Call ``wsfunction`` with a form-encoded POST (the default everywhere)."""
        return self.call(wsfunction, params, method="POST", **kwargs)

    def webservice_get(self, wsfunction: str, params: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        """Call ``wsfunction`` with GET (parity only: the token travels in the URL; prefer POST)."""
        return self.call(wsfunction, params, method="GET", **kwargs)

    def call(
        self,
        wsfunction: str,
        params: Mapping[str, Any] | None = None,
        *,
        method: str = "POST",
        fail_on_warnings: bool = False,
        allowed_warnings: Iterable[str] = (),
    ) -> Any:
        """Call ``wsfunction``; return the decoded JSON or raise a ``MoodleError`` subclass.

        ``fail_on_warnings=True`` raises ``MoodleUnexpectedWarningsError`` when the answer has a
        ``warnings`` list with codes outside ``allowed_warnings``.
        """
        if not wsfunction or not isinstance(wsfunction, str):
            raise ValueError("wsfunction must be a non-empty string")
        method = method.upper()
        if method not in ("GET", "POST"):
            raise ValueError("method must be GET or POST")
        self.metrics.call()
        attempts = 0

        def attempt() -> Any:
            nonlocal attempts
            attempts += 1
            return self._attempt(method, wsfunction, params)

        retrying = Retrying(
            stop=stop_after_attempt(self.settings.max_retries + 1),
            retry=retry_if_exception(lambda e: isinstance(e, MoodleError) and e.retryable),
            wait=self._wait,
            sleep=self._backoff_sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        failure: MoodleError | None = None
        try:
            result = retrying(attempt)
        except MoodleError as exc:
            failure = exc
        if failure is not None:
            # Raise outside the except block: no __context__ chain to third-party exceptions.
            failure.__cause__ = None
            failure.__context__ = None
            failure.__suppress_context__ = True
            failure._set_attempts(attempts)
            self.metrics.failure(failure.kind)
            raise failure
        if fail_on_warnings:
            raise_for_warnings(result, wsfunction, allowed_warnings, secrets=(self._token,))
        return result

    def paginate(
        self,
        wsfunction: str,
        params: Mapping[str, Any] | None = None,
        *,
        page_size: int = 500,
        method: str = "POST",
        max_pages: int | None = None,
    ) -> Iterator[list[Any]]:
        """Yield pages of a ``limitfrom``/``limitnumber`` paginated function (``options`` list
        of ``{name, value}``, as ``core_enrol_get_enrolled_users``), stopping on a short page.

        Guards against servers that ignore the paging options: a page longer than
        ``page_size`` (the whole list came back) ends the iteration after that page.
        """
        if page_size < 1:
            raise ValueError("page_size must be >= 1")
        base = dict(params or {})
        options = [
            o
            for o in list(base.get("options") or [])
            if not (isinstance(o, Mapping) and o.get("name") in ("limitfrom", "limitnumber"))
        ]
        offset = 0
        pages = 0
        while True:
            page_params = dict(base)
            page_params["options"] = [
                *options,
                {"name": "limitfrom", "value": offset},
                {"name": "limitnumber", "value": page_size},
            ]
            page = self.call(wsfunction, page_params, method=method)
            if not isinstance(page, list):
                raise MoodleUnknownError(
                    f"expected a list from a paginated call, got {type(page).__name__}",
                    wsfunction=wsfunction,
                    hint="this function does not paginate with limitfrom/limitnumber options",
                )
            pages += 1
            if page:
                yield page
            if len(page) != page_size:  # short page (or an over-long one: paging ignored)
                return
            if max_pages is not None and pages >= max_pages:
                return
            offset += page_size

    def iter_paginated(self, wsfunction: str, params: Mapping[str, Any] | None = None, **kwargs: Any) -> Iterator[Any]:
        """Items of ``paginate`` one by one."""
        for page in self.paginate(wsfunction, params, **kwargs):
            yield from page

    def get_enrolled_users(
        self,
        courseid: int,
        *,
        options: Sequence[Mapping[str, Any]] = (),
        userfields: Sequence[str] | None = None,
        page_size: int = 500,
    ) -> list[dict[str, Any]]:
        """All participants of a course through ``core_enrol_get_enrolled_users``, page by page."""
        opts = list(options)
        if userfields:
            opts.append({"name": "userfields", "value": ",".join(userfields)})
        return list(
            self.iter_paginated(
                "core_enrol_get_enrolled_users", {"courseid": courseid, "options": opts}, page_size=page_size
            )
        )

    # internals
    def _attempt(self, method: str, wsfunction: str, params: Mapping[str, Any] | None) -> Any:
        encoded = self._token_field + form_body(
            [("wsfunction", wsfunction), ("moodlewsrestformat", "json"), *encode_params(params)]
        )
        waited = self.throttle.acquire()
        self.metrics.throttled(waited)
        if waited >= THROTTLE_LOG_SECONDS:
            logger.info(
                "moodle %s: waited %.1f s for the shared request budget (%g requests/s for this site on this host)",
                wsfunction,
                waited,
                self.settings.requests_per_second,
            )
        self.metrics.request(wsfunction)
        started = time.monotonic()
        transport_error: MoodleError | None = None
        response = None
        body = ""
        try:
            # Redirects are never followed: a 303 would re-send the POST as a GET without its form
            # body, and Moodle would answer "invalid token". classify_response reports them. The
            # whole answer is read before urlopen returns (preload), and the connection reused.
            if method == "POST":
                response = self._http.urlopen(
                    "POST",
                    self.endpoint,
                    body=encoded.encode("ascii"),
                    headers=self._post_headers,
                    timeout=self._timeout,
                    retries=self._no_retries,
                    redirect=False,
                )
            else:
                response = self._http.urlopen(
                    "GET",
                    f"{self.endpoint}?{encoded}",
                    headers=self._get_headers,
                    timeout=self._timeout,
                    retries=self._no_retries,
                    redirect=False,
                )
            # JSON is UTF-8 by definition (RFC 8259) and Moodle omits the charset.
            body = response.data.decode("utf-8", errors="replace")
        except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as exc:
            transport_error = self._transport_error(exc, wsfunction)
        elapsed_ms = (time.monotonic() - started) * 1000
        if transport_error is not None:
            logger.debug("moodle %s %s -> %s in %.0f ms", method, wsfunction, transport_error.message, elapsed_ms)
            raise transport_error
        assert response is not None
        status = response.status
        logger.debug("moodle %s %s -> HTTP %s in %.0f ms (%d bytes)", method, wsfunction, status, elapsed_ms, len(body))
        if status == 429:
            self.metrics.got_429()
        raw_retry_after = response.headers.get("Retry-After")
        retry_after = parse_retry_after(raw_retry_after)
        data, error = classify_response(
            status,
            body,
            response.headers.get("Content-Type", ""),
            wsfunction,
            retry_after=retry_after,
            ratelimit_errorcode=self.settings.ratelimit_errorcode,
            ratelimit_message=self.settings.ratelimit_message,
            secrets=(self._token,),
            location=response.headers.get("Location"),
        )
        if error is None:
            return data
        if status != 429 and error.kind == "rate_limited":
            self.metrics.got_ratelimit_payload()
        if error.retryable and retry_after is not None:
            cap = self.settings.retry_after_cap_ms / 1000.0
            try:
                check_retry_after(retry_after, raw_retry_after, cap)
            except RetryAfterTooLong as too_long:
                error.retryable = False
                error.message = (
                    f"{error.message}; the server asked to retry after {too_long.raw!r} (= {too_long.seconds:.0f} s), "
                    f"beyond the {cap:.0f} s cap (MOODLE_RATE_LIMIT_RETRY_AFTER_CAP_MS), so the call fails now "
                    "instead of waiting"
                )
                error.hint = (
                    "the site asks for a long pause: re-run the sync later, or lower "
                    "MOODLE_RATE_LIMIT_REQUESTS_PER_SECOND so the proxy stops limiting"
                )
                error.args = (error._render(),)
            else:
                # Everyone on this host pauses, not only this thread.
                logger.warning(
                    "moodle %s: the site asked to retry after %s (%.1f s); every request to it from this host pauses",
                    wsfunction,
                    raw_retry_after,
                    retry_after,
                )
                self.throttle.penalize(retry_after)
        return self._raise(error)

    @staticmethod
    def _raise(error: MoodleError) -> Any:
        raise error

    def _transport_error(self, exc: BaseException, wsfunction: str) -> MoodleError:
        """The typed error for a failure below HTTP (urllib3's exceptions). Permanent ones (unknown
        host, TLS handshake, a refused connection where the other scheme answers) fail at once with
        a hint; only what can pass (a dropped or refused connection, a timeout) is retried."""
        if isinstance(exc, MaxRetryError) and exc.reason is not None:
            exc = exc.reason  # not raised with retries=False, but urllib3's wrapper if it ever is
        # A failure on the way to a proxy is a connection failure (as requests reported it), even
        # a timeout or a TLS one: ProxyError is checked first.
        via_proxy = isinstance(exc, ProxyError)
        connection = via_proxy or isinstance(
            exc, (NewConnectionError, ProtocolError, OSError, http.client.HTTPException)
        )
        detail = scrub(_root_reason(exc), (self._token,))
        if len(detail) > 300:
            detail = detail[:300] + "…"
        parts = urlsplit(self.settings.url)
        scheme, host = parts.scheme, parts.hostname or ""
        port = parts.port or (443 if scheme == "https" else 80)
        where = f"{host}:{port}"
        if isinstance(exc, ReadTimeoutError) and not via_proxy:
            return MoodleTransientError(
                f"no answer within {self.settings.read_timeout_s:g} s ({detail})",
                wsfunction=wsfunction,
                hint="the call is too heavy for the site or it is overloaded: raise MOODLE_HTTP_READ_TIMEOUT_S or "
                "request fewer rows per call",
                retryable=False,
            )
        if isinstance(exc, (SSLError, ssl.SSLError)) and not via_proxy:
            if "CERTIFICATE_VERIFY_FAILED" in detail or "certificate verify failed" in detail.lower():
                hint = (
                    f"the certificate of {host} is not trusted here: fix the site's certificate chain, or point "
                    "REQUESTS_CA_BUNDLE at your CA's certificate file"
                )
            elif scheme == "https":
                hint = (
                    f"{where} does not speak TLS as expected: if the site is served over plain HTTP, "
                    f"MOODLE_URL must start with http://, not https://"
                )
            else:
                hint = "check MOODLE_URL's scheme and port"
            return MoodleNetworkError(f"TLS handshake with {where} failed ({detail})", wsfunction=wsfunction, hint=hint)
        if connection and _is_name_resolution(exc):
            return MoodleNetworkError(
                f"the host name {host!r} does not resolve ({detail})",
                wsfunction=wsfunction,
                hint="check the host name in MOODLE_URL (a typo?) and this machine's DNS",
            )
        if isinstance(exc, ConnectTimeoutError) and not isinstance(exc, NewConnectionError):
            return MoodleTransientError(
                f"no connection to {where} within {self.settings.connect_timeout_s:g} s ({detail})",
                wsfunction=wsfunction,
                hint="a firewall may drop the traffic, or the host is down: check MOODLE_URL and that the site is "
                "reachable from this machine",
                retryable=True,
            )
        if connection and _is_refused(exc):
            other = _other_scheme(scheme, host, parts.port, self.settings.connect_timeout_s)
            if other is not None:
                return MoodleNetworkError(
                    f"connection to {where} refused ({detail})",
                    wsfunction=wsfunction,
                    hint=f"nothing listens on port {port}, but {other} answers: the site speaks "
                    f"{other.split(':')[0]}, so MOODLE_URL must start with {other.split(':')[0]}://",
                )
            return MoodleTransientError(
                f"connection to {where} refused ({detail})",
                wsfunction=wsfunction,
                hint=f"nothing accepts connections on {where}: check the port in MOODLE_URL and that the site's web "
                "server is running",
                retryable=True,
            )
        if connection or isinstance(exc, DecodeError):
            return MoodleTransientError(
                f"connection failed or dropped ({detail})",
                wsfunction=wsfunction,
                hint="check MOODLE_URL and that the site is reachable; the sync can be re-run once it is",
                retryable=True,
            )
        if isinstance(exc, (LocationValueError, URLSchemeUnknown)):
            return MoodleUnknownError(f"invalid site URL ({detail})", wsfunction=wsfunction, hint="check MOODLE_URL")
        return MoodleUnknownError(f"HTTP request failed ({detail})", wsfunction=wsfunction)

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        return retry_wait(
            state.attempt_number,
            self.settings.base_delay_ms / 1000.0,
            self.settings.max_delay_ms / 1000.0,
            self._rng(),
            retry_after,
        )

    def _backoff_sleep(self, seconds: float) -> None:
        self.metrics.retry(seconds)
        if seconds > 0:
            self._sleep(seconds)

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        kind = getattr(exc, "kind", type(exc).__name__)
        summary = getattr(exc, "message", "")
        logger.warning(
            "moodle %s: %s (%s); retry %d/%d in %.2f s",
            getattr(exc, "wsfunction", "?"),
            kind,
            summary,
            state.attempt_number,
            self.settings.max_retries,
            wait,
        )


# --- telling permanent network failures from passing ones -----------------------------------


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything it wraps (urllib3's ProxyError / ProtocolError -> OSError...)."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for nested in (getattr(current, "reason", None), current.__cause__, current.__context__, *current.args):
            if isinstance(nested, BaseException):
                stack.append(nested)


def _root_reason(exc: BaseException) -> str:
    """The innermost OS or TLS reason (``[Errno 111] Connection refused``), not urllib3's layers
    of wrapping around it; the exception's own text when there is none."""
    best: BaseException | None = None
    for cause in _causes(exc):
        specific = isinstance(cause, (ssl.SSLError, socket.gaierror, ConnectionRefusedError, TimeoutError))
        if specific or (best is None and isinstance(cause, OSError) and cause.errno is not None):
            best = cause
    if best is not None:
        return str(best) or type(best).__name__
    text = str(exc)
    match = re.search(r"\[Errno -?\d+\][^'\")]*", text)
    return match.group(0).strip() if match else f"{type(exc).__name__}: {text}"


def _is_name_resolution(exc: BaseException) -> bool:
    for cause in _causes(exc):
        if isinstance(cause, socket.gaierror) or type(cause).__name__ == "NameResolutionError":
            return True
    text = str(exc)
    return "Name or service not known" in text or "nodename nor servname" in text or "getaddrinfo failed" in text


def _is_refused(exc: BaseException) -> bool:
    for cause in _causes(exc):
        if isinstance(cause, ConnectionRefusedError) or getattr(cause, "errno", None) == errno.ECONNREFUSED:
            return True
    return "Connection refused" in str(exc) or "[Errno 111]" in str(exc)


def _other_scheme(scheme: str, host: str, port: int | None, timeout: float) -> str | None:
    """When the URL uses its scheme's default port and that port refuses, whether the other
    scheme's default port accepts a TCP connection ("https:443" / "http:80"), else None."""
    if port is not None or not host:
        return None  # an explicit port: a refusal says nothing about the scheme
    other, other_port = ("http", 80) if scheme == "https" else ("https", 443)
    try:
        with socket.create_connection((host, other_port), timeout=min(timeout, 3.0)):
            return f"{other}:{other_port}"
    except OSError:
        return None
