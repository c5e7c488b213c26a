"""Every setting of the product, declared once: environment variable, type, default, one line of doc.

Defaults are those of the code each setting feeds (the client's `DEFAULT_*`, `SyncOptions`,
the history's heartbeat timeout, the scheduler's tick), referenced here, never copied.

`load_settings()` reads the environment into a validated, immutable `Settings` (a bad value is
a `ConfigError` with one line naming the variable); the entry points call it at start-up (CLI,
`serve`, the code location) and hand the values down: Dagster resources get them as fields in
`definitions.py`, the web process receives them when its app is built. Nothing below those
entry points reads the environment. The README's configuration table is rendered from this
model (`moodle_assets.settings.reference`), and a test keeps the two in step.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticUndefined
from sqlalchemy.engine import make_url

from resources import moodle_client as _client
from resources import moodle_errors as _errors
from schedules.plan import DEFAULT_TICK_SECONDS

from ..core import redaction
from ..core.validation import ConfigError, check_http_url
from ..history.runs import DEFAULT_HEARTBEAT_TIMEOUT_S
from ..sync.options import SyncOptions

# Where a source checkout keeps its data by default: `data/` beside workspace.yaml.
_CHECKOUT_ROOT = Path(__file__).resolve().parents[2]
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# Defaults belong to the code that uses them; this module says which variable sets each.
_SYNC = SyncOptions()


def _var(default: Any, env: str, doc: str, *, secret: bool = False, group: str, **constraints: Any) -> Any:
    """Declare one setting: the environment variable it comes from, its default and its doc line."""
    return Field(
        default, alias=env, description=doc, json_schema_extra={"secret": secret, "group": group}, **constraints
    )


def default_data_dir() -> Path:
    """`data/` beside workspace.yaml in a source checkout, else `data/` in the working directory."""
    if (_CHECKOUT_ROOT / "workspace.yaml").exists() and (_CHECKOUT_ROOT / "moodle_assets").is_dir():
        return _CHECKOUT_ROOT / "data"
    return Path.cwd() / "data"


class Settings(BaseModel):
    """The validated settings of one process. Secrets are held but never printed (`describe()`)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    # --- Moodle -----------------------------------------------------------------------------
    moodle_url: str | None = _var(
        None,
        "MOODLE_URL",
        "site base URL, e.g. `https://lms.example.edu`; unset: `serve` runs the bundled demo",
        group="Moodle",
    )
    moodle_token: str | None = _var(
        None,
        "MOODLE_TOKEN",
        "web-service token; never in run config, logs, URLs, run rows or exceptions",
        secret=True,
        group="Moodle",
    )
    price_field: str = _var(
        _SYNC.price_field, "MOODLE_PRICE_FIELD", "course custom field holding the price", group="Moodle"
    )
    currency_field: str = _var(
        _SYNC.currency_field, "MOODLE_CURRENCY_FIELD", "course custom field holding the currency", group="Moodle"
    )
    default_currency: str | None = _var(
        None,
        "MOODLE_DEFAULT_CURRENCY",
        "ISO 4217 currency for priced courses without a currency field",
        group="Moodle",
    )

    # --- the Moodle client ------------------------------------------------------------------
    max_retries: int = _var(
        _client.DEFAULT_MAX_RETRIES,
        "MOODLE_RATE_LIMIT_MAX_RETRIES",
        "retries after the first attempt",
        ge=0,
        le=20,
        group="Client",
    )
    base_delay_ms: int = _var(
        _client.DEFAULT_BASE_DELAY_MS,
        "MOODLE_RATE_LIMIT_BASE_DELAY_MS",
        "first backoff step (exponential, full jitter)",
        ge=0,
        group="Client",
    )
    max_delay_ms: int = _var(
        _client.DEFAULT_MAX_DELAY_MS,
        "MOODLE_RATE_LIMIT_MAX_DELAY_MS",
        "cap on one computed backoff",
        ge=0,
        group="Client",
    )
    requests_per_second: float = _var(
        _client.DEFAULT_RPS,
        "MOODLE_RATE_LIMIT_REQUESTS_PER_SECOND",
        "proactive throttle shared by every run and process on the host (`0` = off)",
        ge=0,
        group="Client",
    )
    throttle_burst: float = _var(
        _client.DEFAULT_THROTTLE_BURST,
        "MOODLE_RATE_LIMIT_BURST",
        "requests the throttle may run ahead of even spacing to make up a late start (GCRA burst; `0` = strict "
        "spacing, for a proxy with a bucket of 1)",
        ge=0,
        group="Client",
    )
    retry_after_cap_ms: int = _var(
        _client.DEFAULT_RETRY_AFTER_CAP_MS,
        "MOODLE_RATE_LIMIT_RETRY_AFTER_CAP_MS",
        "a `Retry-After` longer than this fails fast, quoting what the server asked",
        ge=0,
        group="Client",
    )
    ratelimit_errorcode_pattern: str = _var(
        _errors.DEFAULT_RATELIMIT_ERRORCODE_PATTERN,
        "MOODLE_RATE_LIMIT_ERRORCODE_PATTERN",
        'regular expression: a Moodle `errorcode` that means "rate limited" (retried)',
        group="Client",
    )
    ratelimit_message_pattern: str = _var(
        _errors.DEFAULT_RATELIMIT_MESSAGE_PATTERN,
        "MOODLE_RATE_LIMIT_MESSAGE_PATTERN",
        'regular expression: an error message that means "rate limited" (retried)',
        group="Client",
    )
    connect_timeout_s: float = _var(
        _client.DEFAULT_CONNECT_TIMEOUT_S,
        "MOODLE_HTTP_CONNECT_TIMEOUT_S",
        "seconds to open a connection to Moodle",
        gt=0,
        group="Client",
    )
    read_timeout_s: float = _var(
        _client.DEFAULT_READ_TIMEOUT_S,
        "MOODLE_HTTP_READ_TIMEOUT_S",
        "seconds to wait for one answer (a 20k-user request takes ~70 s)",
        gt=0,
        group="Client",
    )
    pool_size: int = _var(
        _client.DEFAULT_POOL_SIZE,
        "MOODLE_HTTP_POOL_SIZE",
        "HTTP connections kept open per sync",
        ge=1,
        le=64,
        group="Client",
    )
    throttle_dir: Path | None = _var(
        None,
        "MOODLE_THROTTLE_DIR",
        "directory of the host-wide throttle's state file (every process syncing from this host must share it); "
        "default: `moodle-integration-throttle` in the system temp dir",
        group="Client",
    )

    # --- the sync ---------------------------------------------------------------------------
    concurrency: int = _var(
        _SYNC.concurrency,
        "MOODLE_SYNC_CONCURRENCY",
        "requests in flight at once (within the shared rate budget)",
        ge=1,
        le=32,
        group="Sync",
    )
    enrolment_page_size: int = _var(
        _SYNC.enrolment_page_size,
        "MOODLE_SYNC_ENROLMENT_PAGE_SIZE",
        "rows per page of enrolled users",
        ge=1,
        le=100_000,
        group="Sync",
    )
    user_id_page_size: int = _var(
        _SYNC.user_id_page_size,
        "MOODLE_SYNC_USER_ID_PAGE_SIZE",
        "user ids per page when listing every user (site-course participants)",
        ge=1,
        le=100_000,
        group="Sync",
    )
    user_batch_size: int = _var(
        _SYNC.user_batch_size,
        "MOODLE_SYNC_USER_BATCH_SIZE",
        "users per `core_user_get_users_by_field` request (~3.5 ms of Moodle time each)",
        ge=1,
        le=2000,
        group="Sync",
    )
    max_deactivate_fraction: float = _var(
        _SYNC.max_deactivate_fraction,
        "MOODLE_SYNC_MAX_DEACTIVATE_FRACTION",
        "mass-deactivation guard: refuse a sync that would mark more than this share of a table inactive",
        ge=0,
        le=1,
        group="Sync",
    )
    deactivate_min_rows: int = _var(
        _SYNC.deactivation_guard_min_rows,
        "MOODLE_SYNC_DEACTIVATE_MIN_ROWS",
        "deactivations up to this many always pass the guard",
        ge=0,
        group="Sync",
    )
    max_unreadable_course_fraction: float = _var(
        _SYNC.max_unreadable_course_fraction,
        "MOODLE_SYNC_MAX_UNREADABLE_COURSE_FRACTION",
        "ENROLLMENTS fails (nothing written) when more than this share of the catalog's courses refuse to show "
        "their participants to the token; a smaller share succeeds with a warning, those courses left as they were",
        ge=0,
        le=1,
        group="Sync",
    )
    changelog_retention_days: int = _var(
        _SYNC.changelog_retention_days,
        "MOODLE_CHANGELOG_RETENTION_DAYS",
        "days the change log (`integration_change_log`: what each sync changed) keeps its rows, pruned at the end "
        "of each sync; 0 turns the change log off",
        ge=0,
        le=36_500,
        group="Sync",
    )
    heartbeat_timeout_seconds: int = _var(
        DEFAULT_HEARTBEAT_TIMEOUT_S,
        "MOODLE_SYNC_HEARTBEAT_TIMEOUT_SECONDS",
        'a RUNNING sync without a heartbeat this long is closed as "worker lost" (the fallback for a stopped, hung '
        "or cut-off worker; a dead one is noticed at once through its liveness lock)",
        ge=5,
        le=86_400,
        group="Sync",
    )
    sensor_interval_seconds: int = _var(
        DEFAULT_TICK_SECONDS,
        "MOODLE_SCHEDULE_SENSOR_INTERVAL_SECONDS",
        "how often the schedule sensors read the config table",
        ge=1,
        le=3600,
        group="Sync",
    )

    # --- storage and the web process ---------------------------------------------------------
    data_dir: Path = _var(
        None,
        "MOODLE_INTEGRATION_DATA_DIR",
        "SQLite file, `dagster_home/` and the web signing key; default `data/` of the checkout, else of the "
        "working directory",
        group="Storage",
    )
    database_url: str = _var(
        None,
        "DATABASE_URL",
        "app database (SQLAlchemy URL): default the SQLite file `moodle_integration.sqlite3` in the data dir; "
        "`postgresql://` is served by psycopg2; relative SQLite paths are taken from the working directory",
        secret=False,
        group="Storage",
    )
    dagster_home: Path = _var(
        None,
        "DAGSTER_HOME",
        "the Dagster instance (run history, schedules); default `dagster_home/` in the data dir, with the "
        "project's instance config; give your own for e.g. PostgreSQL storage",
        group="Storage",
    )
    sync_secret: str | None = _var(
        None,
        "MOODLE_SYNC_CRON_SECRET",
        "secret of `POST /api/integration/moodle/sync`; unset: it answers 503",
        secret=True,
        group="Web",
    )
    web_token: str | None = _var(
        None,
        "MOODLE_INTEGRATION_WEB_TOKEN",
        "puts the whole web process behind a bearer token / sign-in; unset: open (bound to 127.0.0.1)",
        secret=True,
        group="Web",
    )
    web_signing_key: str | None = _var(
        None,
        "MOODLE_INTEGRATION_WEB_SIGNING_KEY",
        "HMAC key for CSRF tokens and messages (share it across replicas); default: random, kept in the data dir",
        secret=True,
        group="Web",
    )
    log_level: str = _var(
        "INFO",
        "MOODLE_INTEGRATION_LOG_LEVEL",
        "level of the web process's and CLI's log lines on stderr",
        group="Web",
    )

    # --- validation -----------------------------------------------------------------------------

    @field_validator("moodle_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return None if value is None else check_http_url(value)

    @field_validator("default_currency")
    @classmethod
    def _currency(cls, value: str | None) -> str | None:
        if value is None:
            return None
        code = value.upper()
        if len(code) != 3 or not code.isascii() or not code.isalpha():
            raise ValueError("must be a 3-letter ISO 4217 code such as EUR")
        return code

    @field_validator("ratelimit_errorcode_pattern", "ratelimit_message_pattern")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"must be a regular expression ({exc})") from None
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("data_dir", "dagster_home", "throttle_dir", mode="after")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        # Relative paths mean "from where the user ran the command", whatever process reads them later.
        return None if value is None else value.expanduser().resolve()

    @model_validator(mode="before")
    @classmethod
    def _derived_defaults(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        values = dict(values)
        data = values.get("MOODLE_INTEGRATION_DATA_DIR") or values.get("data_dir")
        data_dir = Path(data).expanduser().resolve() if data else default_data_dir()
        defaults = {
            ("MOODLE_INTEGRATION_DATA_DIR", "data_dir"): str(data_dir),
            ("DATABASE_URL", "database_url"): f"sqlite:///{data_dir / 'moodle_integration.sqlite3'}",
            ("DAGSTER_HOME", "dagster_home"): str(data_dir / "dagster_home"),
        }
        for (alias, name), default in defaults.items():
            if not values.get(alias) and not values.get(name):
                values[alias] = default
        return values

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return _database_url(value)

    @model_validator(mode="after")
    def _delays(self) -> Settings:
        if self.max_delay_ms < self.base_delay_ms:
            raise ValueError(
                f"MOODLE_RATE_LIMIT_MAX_DELAY_MS ({self.max_delay_ms}) must be >= "
                f"MOODLE_RATE_LIMIT_BASE_DELAY_MS ({self.base_delay_ms})"
            )
        return self

    # --- reading --------------------------------------------------------------------------------

    @property
    def default_database_url(self) -> str:
        return f"sqlite:///{self.data_dir / 'moodle_integration.sqlite3'}"

    @property
    def database_url_from_env(self) -> bool:
        """True when DATABASE_URL names a database of its own."""
        return self.database_url != self.default_database_url

    @property
    def database_url_has_password(self) -> bool:
        try:
            return bool(make_url(self.database_url).password)
        except Exception:
            return False

    def secrets(self) -> list[str]:
        return [v for v in (self.moodle_token, self.sync_secret, self.web_token, self.web_signing_key) if v]

    def moodle_client_options(self) -> dict[str, object]:
        """The Moodle client's tunables (`resources.moodle_client.ClientSettings` keyword arguments)."""
        return {
            "max_retries": self.max_retries,
            "base_delay_ms": self.base_delay_ms,
            "max_delay_ms": self.max_delay_ms,
            "requests_per_second": self.requests_per_second,
            "throttle_burst": self.throttle_burst,
            "retry_after_cap_ms": self.retry_after_cap_ms,
            "connect_timeout_s": self.connect_timeout_s,
            "read_timeout_s": self.read_timeout_s,
            "pool_size": self.pool_size,
            "throttle_dir": str(self.throttle_dir) if self.throttle_dir else None,
            "ratelimit_errorcode_pattern": self.ratelimit_errorcode_pattern,
            "ratelimit_message_pattern": self.ratelimit_message_pattern,
        }

    def describe(self) -> dict[str, str]:
        """What an operator may see: every variable with its value, secrets only as set/unset."""
        shown: dict[str, str] = {}
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            if extra.get("secret"):
                text = "(set)" if value else "(unset)"
            elif name == "database_url":
                text = mask_url_password(value)
            else:
                text = "(unset)" if value is None else str(value)
            shown[str(field.alias)] = text
        return shown


def _database_url(url: str) -> str:
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    backend = scheme.split("+", 1)[0]
    if backend not in ("sqlite", "postgresql", "postgres"):
        raise ValueError(
            "must be a SQLAlchemy URL for SQLite (sqlite:///path) or PostgreSQL (postgresql://user:pass@host/db); "
            f"the scheme is {scheme or '(none)'!r}"
        )
    try:
        parsed = make_url(url)
    except Exception:
        raise ValueError("is not a valid SQLAlchemy URL") from None
    if backend == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            path = Path(database).expanduser()
            if not path.is_absolute():
                return parsed.set(database=str(path.resolve())).render_as_string(hide_password=False)
    return url


def absolute_database_url(url: str) -> str:
    """Validate a SQLAlchemy URL for SQLite or PostgreSQL; make a relative SQLite path absolute
    (relative to the working directory of the process that reads it)."""
    try:
        return _database_url(url)
    except ValueError as exc:
        raise ConfigError(f"DATABASE_URL {exc}") from None


def mask_url_password(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # unparsable: validation says so
        return "(unparsable)"


def _env_values(env: Mapping[str, str]) -> dict[str, str]:
    names = {str(f.alias) for f in Settings.model_fields.values()}
    return {name: env[name].strip() for name in names if name in env and env[name].strip()}


def _error_line(exc: ValidationError, given: Mapping[str, str]) -> str:
    error = exc.errors(include_url=False)[0]
    loc = error.get("loc") or ()
    name = str(loc[0]) if loc else ""
    fields = {str(f.alias): f for f in Settings.model_fields.values()}
    message = str(error.get("msg", "is invalid"))
    message = message.removeprefix("Value error, ")
    if name not in fields:  # a model-level rule: its message names the variables
        return message
    extra = fields[name].json_schema_extra
    secret = isinstance(extra, dict) and bool(extra.get("secret"))
    if secret:
        shown = "(hidden)"
    elif name == "DATABASE_URL":
        shown = repr(mask_url_password(given.get(name, "")))
    else:
        shown = repr(given.get(name, ""))
    kind = error.get("type", "")
    if kind in ("int_parsing", "int_from_float"):
        message = "must be a whole number"
    elif kind in ("float_parsing", "finite_number"):
        message = "must be a number"
    elif kind.startswith(("greater_than", "less_than")):
        message = "must be " + message.removeprefix("Input should be ")
    return f"{name} {message}, got {shown}"


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting from `env` (default: the process environment).

    Empty values count as unset. Raises `ConfigError` with one line naming the first bad
    variable. Registers the secrets with `core.redaction`, so any text this process writes to
    a run row, a log line or Dagster metadata has them masked.
    """
    given = _env_values(os.environ if env is None else env)
    try:
        settings = Settings.model_validate(given)
    except ValidationError as exc:
        raise ConfigError(_error_line(exc, given)) from None
    except ConfigError:
        raise
    redaction.register_secrets(settings.secrets())
    return settings


def declared_variables() -> list[tuple[str, Any, str, bool, str]]:
    """(variable, default, doc, secret, group) for every setting, in declaration order."""
    rows = []
    for field in Settings.model_fields.values():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        default = None if field.default is PydanticUndefined else field.default
        rows.append(
            (str(field.alias), default, field.description or "", bool(extra.get("secret")), str(extra.get("group", "")))
        )
    return rows
