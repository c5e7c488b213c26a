"""Application settings from the environment, validated in one place.

`load_settings()` is called at start-up by the CLI and the web process, so a bad value
fails there with one line naming the variable. Secrets (`MOODLE_TOKEN`,
`MOODLE_SYNC_CRON_SECRET`) are held but never printed: `describe()` masks them.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from resources.config import ConfigError, env_str, validate_http_url

DATA_DIR_ENV = "MOODLE_INTEGRATION_DATA_DIR"
PACKAGE_ROOT = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_ROOT.parent


def default_data_dir() -> Path:
    """`data/` beside workspace.yaml in a source checkout, else `./data`."""
    if (PROJECT_ROOT / "workspace.yaml").exists():
        return PROJECT_ROOT / "data"
    return Path.cwd() / "data"


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    value = env_str(DATA_DIR_ENV, env=env)
    return Path(value).expanduser().resolve() if value else default_data_dir()


def default_database_url(env: Mapping[str, str] | None = None) -> str:
    return f"sqlite:///{data_dir(env) / 'moodle_integration.sqlite3'}"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    moodle_url: str | None
    moodle_token: str | None
    sync_secret: str | None
    price_field: str
    currency_field: str
    default_currency: str | None

    def describe(self) -> dict[str, str]:
        """What an operator may see: secrets only as set/unset."""
        return {
            "data_dir": str(self.data_dir),
            "DATABASE_URL": _mask_url_password(self.database_url),
            "MOODLE_URL": self.moodle_url or "(unset: the bundled demo emulator)",
            "MOODLE_TOKEN": "(set)" if self.moodle_token else "(unset)",
            "MOODLE_SYNC_CRON_SECRET": "(set)" if self.sync_secret else "(unset: trigger endpoint answers 503)",
            "MOODLE_PRICE_FIELD": self.price_field,
            "MOODLE_CURRENCY_FIELD": self.currency_field,
            "MOODLE_DEFAULT_CURRENCY": self.default_currency or "(unset)",
        }


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise ConfigError naming the first bad variable."""
    from resources.moodle_client import validate_env

    env = os.environ if env is None else env
    validate_env(env)  # the client's MOODLE_RATE_LIMIT_* / MOODLE_HTTP_* tunables
    from .sync.options import SyncOptions

    database_url = env_str("DATABASE_URL", env=env) or default_database_url(env)
    validate_database_url(database_url)
    moodle_url = env_str("MOODLE_URL", env=env)
    if moodle_url is not None:
        moodle_url = validate_http_url("MOODLE_URL", moodle_url)
    default_currency = env_str("MOODLE_DEFAULT_CURRENCY", env=env)
    if default_currency is not None:
        default_currency = default_currency.upper()
        if len(default_currency) != 3 or not default_currency.isalpha() or not default_currency.isascii():
            raise ConfigError(
                f"MOODLE_DEFAULT_CURRENCY must be a 3-letter ISO 4217 code such as EUR, got {default_currency!r}"
            )
    settings = Settings(
        data_dir=data_dir(env),
        database_url=database_url,
        moodle_url=moodle_url,
        moodle_token=env_str("MOODLE_TOKEN", env=env),
        sync_secret=env_str("MOODLE_SYNC_CRON_SECRET", env=env),
        price_field=env_str("MOODLE_PRICE_FIELD", "price", env=env) or "price",
        currency_field=env_str("MOODLE_CURRENCY_FIELD", "currency", env=env) or "currency",
        default_currency=default_currency,
    )
    SyncOptions.from_settings(settings, env)  # the MOODLE_SYNC_* tunables
    return settings


def validate_database_url(url: str) -> None:
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    backend = scheme.split("+", 1)[0]
    if backend not in ("sqlite", "postgresql", "postgres"):
        raise ConfigError(
            "DATABASE_URL must be a SQLAlchemy URL for SQLite (sqlite:///path) or PostgreSQL "
            f"(postgresql://user:pass@host/db), got scheme {scheme or '(none)'!r}"
        )


def _mask_url_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is reported by validate_database_url
        return "(unparsable)"
