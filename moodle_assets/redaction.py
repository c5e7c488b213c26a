"""Keep secrets out of anything a person or a log may read.

`redact()` removes the Moodle token and the sync secret (from the environment, plus any
extra values given) and any `wstoken=...` query/form value from a text. Run rows, Dagster
metadata and log lines that carry error text pass through it.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable

SECRET_ENV_VARS = (
    "MOODLE_TOKEN",
    "MOODLE_SYNC_CRON_SECRET",
    "MOODLE_INTEGRATION_WEB_TOKEN",
    "MOODLE_INTEGRATION_WEB_SIGNING_KEY",
)
MASK = "[REDACTED]"
_WSTOKEN = re.compile(r"(wstoken=)[^&\s'\"]+", re.IGNORECASE)
MAX_ERROR_CHARS = 4000


def secret_values(extra: Iterable[str | None] = ()) -> list[str]:
    values = [os.environ.get(name) for name in SECRET_ENV_VARS] + list(extra)
    # Longest first so a secret that contains another is masked whole.
    return sorted({v for v in values if v and len(v) >= 4}, key=len, reverse=True)


def redact(text: str | None, extra: Iterable[str | None] = ()) -> str | None:
    if text is None:
        return None
    text = _WSTOKEN.sub(r"\1" + MASK, str(text))
    for secret in secret_values(extra):
        text = text.replace(secret, MASK)
    return text


def error_text(exc: BaseException, extra: Iterable[str | None] = ()) -> str:
    """One readable line for a run row: the exception's type and message, secrets removed."""
    message = str(exc).strip() or exc.__class__.__name__
    text = f"{exc.__class__.__name__}: {message}" if exc.__class__.__name__ not in message else message
    text = redact(text, extra) or ""
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 1] + "…"
    return text
