"""A run's cause in one short line, for tables and page cells (the full text stays on the row)."""

from __future__ import annotations

from .redaction import redact

SHORT_CAUSE_CHARS = 120


def short_cause(text: str | None, limit: int = SHORT_CAUSE_CHARS) -> str | None:
    """The first non-empty line of `text`, secrets masked, cut to `limit` characters with "…".

    Error texts are ``ExceptionClass: message`` (see `redaction.error_text`), so the short
    cause keeps the class and the start of the message."""
    if not text:
        return None
    masked = redact(text) or ""
    first = next((line.strip() for line in masked.splitlines() if line.strip()), "")
    # Long one-line texts often chain causes with "; " or " | ": keep the first.
    for separator in (" | ",):
        first = first.split(separator, 1)[0]
    return first if len(first) <= limit else first[: limit - 1].rstrip() + "…"
