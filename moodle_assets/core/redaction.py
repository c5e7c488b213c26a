"""Keep secrets out of anything a person or a log may read.

The process's secrets (the Moodle token, the sync secret, the web token and signing key) are
registered once, when the settings are loaded (`moodle_assets.settings.load_settings`).
`redact()` masks them, plus any extra values given and any `wstoken=...` query/form value, in a
text. Run rows, Dagster metadata and log lines that carry error text pass through it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable

MASK = "[REDACTED]"
MAX_ERROR_CHARS = 4000
_WSTOKEN = re.compile(r"(wstoken=)[^&\s'\"]+", re.IGNORECASE)
_MIN_SECRET_CHARS = 4  # shorter values would mask ordinary words

_registered: set[str] = set()
_lock = threading.Lock()


def register_secrets(values: Iterable[str | None]) -> None:
    """Remember values that must never be shown (idempotent; values shorter than 4 chars are ignored)."""
    with _lock:
        _registered.update(v for v in values if v and len(v) >= _MIN_SECRET_CHARS)


def secret_values(extra: Iterable[str | None] = ()) -> list[str]:
    with _lock:
        values = set(_registered)
    values.update(v for v in extra if v and len(v) >= _MIN_SECRET_CHARS)
    # Longest first so a secret that contains another is masked whole.
    return sorted(values, key=len, reverse=True)


def redact(text: str | None, extra: Iterable[str | None] = ()) -> str | None:
    if text is None:
        return None
    text = _WSTOKEN.sub(r"\1" + MASK, str(text))
    for secret in secret_values(extra):
        text = text.replace(secret, MASK)
    return text


def clip(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_text(exc: BaseException, extra: Iterable[str | None] = ()) -> str:
    """One readable line for a run row: the exception's type and message, secrets removed."""
    message = str(exc).strip() or exc.__class__.__name__
    text = f"{exc.__class__.__name__}: {message}" if exc.__class__.__name__ not in message else message
    return clip(redact(text, extra) or "")
