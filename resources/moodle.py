"""The one way this project talks to Moodle: ``MoodleResource`` (Dagster) → ``MoodleClient`` (HTTP).

Usage::

    moodle = MoodleResource(url="https://lms.example.edu", token="...")     # plain Python
    Definitions(resources={"moodle": MoodleResource(url=EnvVar("MOODLE_URL"), token=EnvVar("MOODLE_TOKEN"))})
    moodle.webservice_post("core_course_get_categories")
    for page in moodle.get_client().paginate("core_enrol_get_enrolled_users", {"courseid": 2}, page_size=500): ...

What every call gets, in order:

1. **Proactive throttle** (``resources/throttle.py``): a GCRA slot from a file-backed state
   under ``flock`` shared by every thread and process on the host for this site URL, so
   concurrent syncs stay together under ``MOODLE_RATE_LIMIT_REQUESTS_PER_SECOND``. Every HTTP
   attempt (retries included) takes a slot.
2. **The request**: POST form body (or GET query) with PHP bracket encoding of nested params
   (``options[0][name]=onlyactive``), booleans as 0/1, ``moodlewsrestformat=json``; the token
   goes in the POST body, never in a POST URL. One urllib3 connection pool per client (a
   ``ProxyManager`` when the environment names a proxy for the site), shared by threads
   (``block=True`` so threads wait for a connection instead of opening throw-away ones), no
   cookies, no redirects followed, connect/read timeouts, certificates verified against
   ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` or certifi's bundle, ``~/.netrc`` basic auth.
3. **Classification** (``resources/moodle_errors.py``): Moodle errors come as HTTP 200 JSON;
   proxies answer 429/5xx; disabled web services answer 403 with an empty body. Each becomes
   a typed ``MoodleError`` subclass whose message says what to do.
4. **Retries** with tenacity, only for what can succeed later (429, rate-limit payloads,
   502/503/504, connection errors, truncated bodies): exponential backoff with full jitter
   (``resources/retry.py``), ``Retry-After`` honoured when longer, and failing fast when the
   server asks for more than ``retry_after_cap_ms``. A ``Retry-After`` also pushes the shared
   throttle forward so every thread and process on the host pauses, not only this one.
5. **Metrics** per client (so per Dagster run): ``snapshot()`` gives a plain dict for asset
   metadata.

Secrets: the token is a resource field read from ``EnvVar("MOODLE_TOKEN")`` (so Dagster stores
only the variable's name), excluded from ``repr``, never logged, and every text that might
carry it (exception texts, urllib3's DEBUG log prints GET URLs) is scrubbed.
Exceptions raised from here have no ``__cause__``/``__context__`` pointing at third-party
exceptions; a scrubbed description of the underlying error is in the message instead.

Layout: ``resources/moodle_client.py`` (the HTTP client, no Dagster import — worker
processes and the benchmark import it in a fraction of a second), ``resources/moodle_errors.py``
(typed errors + classification), ``resources/retry.py`` (pure backoff maths),
``resources/throttle.py`` (host-wide GCRA). This module is the public face: the resource and
re-exports of everything callers need.

How close to a proxy's limit the client runs, and why the defaults are what they are:
``benchmarks/results/client-throttle.md``.

Swappable implementations: ``MoodleResource.get_client()`` returns a ``MoodleClient``; the
demo and the tests point the *same* client at the bundled emulator by giving the resource the
emulator's URL and token (``MoodleResource.for_emulator(emu)``). Code that only needs the
calls can depend on the ``MoodleApi`` protocol and be handed any implementation.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr

from resources.moodle_client import (
    DEFAULT_BASE_DELAY_MS,
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_MAX_DELAY_MS,
    DEFAULT_MAX_RETRIES,
    DEFAULT_POOL_SIZE,
    DEFAULT_READ_TIMEOUT_S,
    DEFAULT_RETRY_AFTER_CAP_MS,
    DEFAULT_RPS,
    DEFAULT_THROTTLE_BURST,
    DEFAULT_THROTTLE_MARGIN,
    ENDPOINT_PATH,
    ClientMetrics,
    ClientSettings,
    MoodleApi,
    MoodleClient,
    encode_params,
    logger,
)
from resources.moodle_errors import (
    DEFAULT_RATELIMIT_ERRORCODE_PATTERN,
    DEFAULT_RATELIMIT_MESSAGE_PATTERN,
    MoodleAccessError,
    MoodleAccountStateError,
    MoodleAuthenticationError,
    MoodleError,
    MoodleInvalidParameterError,
    MoodleMissingRecordError,
    MoodleNetworkError,
    MoodleRateLimitedError,
    MoodleSiteUrlError,
    MoodleTransientError,
    MoodleUnexpectedWarningsError,
    MoodleUnknownError,
    MoodleWebServicesDisabledError,
    raise_for_warnings,
)

__all__ = [
    "DEFAULT_THROTTLE_MARGIN",
    "ENDPOINT_PATH",
    "ClientMetrics",
    "ClientSettings",
    "MoodleAccessError",
    "MoodleAccountStateError",
    "MoodleApi",
    "MoodleAuthenticationError",
    "MoodleClient",
    "MoodleError",
    "MoodleInvalidParameterError",
    "MoodleMissingRecordError",
    "MoodleNetworkError",
    "MoodleRateLimitedError",
    "MoodleResource",
    "MoodleSiteUrlError",
    "MoodleTransientError",
    "MoodleUnexpectedWarningsError",
    "MoodleUnknownError",
    "MoodleWebServicesDisabledError",
    "encode_params",
    "logger",
    "raise_for_warnings",
]

# The errors live in resources/moodle_errors.py but their public home is this module: make
# tracebacks and Dagster's run logs say ``resources.moodle.MoodleAuthenticationError``.
for _cls in (
    MoodleError,
    MoodleAuthenticationError,
    MoodleAccountStateError,
    MoodleAccessError,
    MoodleInvalidParameterError,
    MoodleMissingRecordError,
    MoodleNetworkError,
    MoodleSiteUrlError,
    MoodleWebServicesDisabledError,
    MoodleRateLimitedError,
    MoodleTransientError,
    MoodleUnknownError,
    MoodleUnexpectedWarningsError,
):
    _cls.__module__ = __name__


# --- the Dagster resource ------------------------------------------------------------


class MoodleResource(ConfigurableResource):
    """Dagster resource for the Moodle site. Give it ``EnvVar("MOODLE_URL")`` and
    ``EnvVar("MOODLE_TOKEN")`` (the token then never reaches run config or run storage); the
    tunables are plain fields with the client's defaults, bound in ``definitions.py`` from the
    validated settings (``MOODLE_RATE_LIMIT_*``, ``MOODLE_HTTP_*``, ``MOODLE_THROTTLE_DIR``)."""

    url: str = Field(description="Moodle site base URL, e.g. https://lms.example.edu (MOODLE_URL)")
    token: str = Field(repr=False, description="Web-service token (use EnvVar('MOODLE_TOKEN'); never plain config)")
    max_retries: int = Field(default=DEFAULT_MAX_RETRIES, description="retries after the first attempt")
    base_delay_ms: int = Field(default=DEFAULT_BASE_DELAY_MS, description="first backoff step")
    max_delay_ms: int = Field(default=DEFAULT_MAX_DELAY_MS, description="cap on one computed backoff")
    requests_per_second: float = Field(default=DEFAULT_RPS, description="host-wide proactive throttle (0 disables)")
    throttle_burst: float = Field(default=DEFAULT_THROTTLE_BURST, description="GCRA burst tolerance of the throttle")
    retry_after_cap_ms: int = Field(
        default=DEFAULT_RETRY_AFTER_CAP_MS, description="longest Retry-After honoured; longer fails fast"
    )
    connect_timeout_s: float = Field(default=DEFAULT_CONNECT_TIMEOUT_S, description="seconds to connect")
    read_timeout_s: float = Field(default=DEFAULT_READ_TIMEOUT_S, description="seconds to wait for an answer")
    pool_size: int = Field(default=DEFAULT_POOL_SIZE, description="HTTP connections kept per client")
    throttle_dir: str | None = Field(default=None, description="directory of the shared throttle state")
    throttle_margin: float = Field(default=DEFAULT_THROTTLE_MARGIN, description="fraction of the rate kept in reserve")
    ratelimit_errorcode_pattern: str = Field(
        default=DEFAULT_RATELIMIT_ERRORCODE_PATTERN, description="regex for rate-limit errorcodes"
    )
    ratelimit_message_pattern: str = Field(
        default=DEFAULT_RATELIMIT_MESSAGE_PATTERN, description="regex for rate-limit messages"
    )

    _client: MoodleClient | None = PrivateAttr(default=None)
    _client_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @classmethod
    def for_emulator(cls, emulator: Any, **overrides: Any) -> MoodleResource:
        """The same resource pointed at a running emulator (anything with ``.url`` and ``.token``)."""
        return cls(url=emulator.url, token=emulator.token, **overrides)

    def settings(self) -> ClientSettings:
        return ClientSettings(
            self.url,
            max_retries=self.max_retries,
            base_delay_ms=self.base_delay_ms,
            max_delay_ms=self.max_delay_ms,
            requests_per_second=self.requests_per_second,
            throttle_burst=self.throttle_burst,
            retry_after_cap_ms=self.retry_after_cap_ms,
            connect_timeout_s=self.connect_timeout_s,
            read_timeout_s=self.read_timeout_s,
            pool_size=self.pool_size,
            throttle_dir=self.throttle_dir,
            throttle_margin=self.throttle_margin,
            ratelimit_errorcode_pattern=self.ratelimit_errorcode_pattern,
            ratelimit_message_pattern=self.ratelimit_message_pattern,
        )

    def get_client(self) -> MoodleClient:
        """The live client (created on first use, then shared by all threads of this run)."""
        with self._client_lock:
            if self._client is None:
                self._client = MoodleClient(self.url, self.token, self.settings())
            return self._client

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self.get_client()  # fail at run start on bad settings, not deep inside a step

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        with self._client_lock:
            if self._client is not None:
                self._client.close()

    def webservice_post(self, wsfunction: str, params: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        return self.get_client().webservice_post(wsfunction, params, **kwargs)

    def webservice_get(self, wsfunction: str, params: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        return self.get_client().webservice_get(wsfunction, params, **kwargs)

    def paginate(self, wsfunction: str, params: Mapping[str, Any] | None = None, **kwargs: Any) -> Iterator[list[Any]]:
        return self.get_client().paginate(wsfunction, params, **kwargs)

    def snapshot(self) -> dict[str, Any]:
        """Metrics of this resource's client as a plain dict (for asset metadata)."""
        return self.get_client().snapshot()
