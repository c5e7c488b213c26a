"""Backoff maths for the Moodle client, as pure functions (property-tested in tests/resources).

The policy ("full jitter", as in the AWS architecture blog post on backoff):

* retry number ``n`` (1 for the first retry) may wait up to ``min(max_delay, base * 2**(n-1))``;
* the actual wait is drawn uniformly from ``[0, that ceiling]`` — spreading retries of many
  clients over the whole window instead of having them all come back at once;
* when the server sent ``Retry-After``, the wait is ``max(jittered wait, Retry-After)``: the
  server's request is honoured even when it is longer than ``max_delay`` (``max_delay`` caps
  only *our own* computed waits);
* a ``Retry-After`` longer than a sane cap is not waited for at all: the caller fails fast
  (see ``RetryAfterTooLong``), because sleeping minutes inside a sync run helps nobody.

Nothing here sleeps, reads a clock or draws random numbers by itself: the random draw and
``now`` are parameters, so every rule is checkable with Hypothesis.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# 2**60 * any sane base is already astronomically larger than any cap: clamp the exponent so
# the arithmetic never overflows whatever the attempt number.
_MAX_EXPONENT = 60


def backoff_ceiling(retry_number: int, base_delay: float, max_delay: float) -> float:
    """Upper bound of the wait before retry ``retry_number`` (1-based): ``min(cap, base*2**(n-1))``."""
    if retry_number < 1:
        raise ValueError("retry_number starts at 1")
    if base_delay < 0 or max_delay < 0:
        raise ValueError("delays must be >= 0")
    exponent = min(retry_number - 1, _MAX_EXPONENT)
    return min(max_delay, base_delay * (2.0**exponent))


def full_jitter(retry_number: int, base_delay: float, max_delay: float, draw: float) -> float:
    """The jittered wait for ``draw`` in ``[0, 1)``: ``draw * backoff_ceiling(...)``."""
    if not 0.0 <= draw <= 1.0:
        raise ValueError("draw must be in [0, 1]")
    return draw * backoff_ceiling(retry_number, base_delay, max_delay)


def retry_wait(
    retry_number: int,
    base_delay: float,
    max_delay: float,
    draw: float,
    retry_after: float | None = None,
) -> float:
    """Seconds to wait before retry ``retry_number``: the jittered backoff, or the server's
    ``Retry-After`` when that is longer. Fail-fast on an excessive Retry-After is the caller's
    job (it needs to raise a typed error) — see ``check_retry_after``."""
    computed = full_jitter(retry_number, base_delay, max_delay, draw)
    if retry_after is not None and retry_after > computed:
        return float(retry_after)
    return computed


def backoff_schedule(
    retries: int,
    base_delay: float,
    max_delay: float,
    rng: Callable[[], float] = random.random,
) -> list[float]:
    """The waits for ``retries`` consecutive retries without Retry-After (for docs and tests)."""
    return [full_jitter(n, base_delay, max_delay, rng()) for n in range(1, retries + 1)]


class RetryAfterTooLong(Exception):
    """The server asked for a wait longer than we are willing to sleep inside a run."""

    def __init__(self, seconds: float, raw: str, cap: float) -> None:
        super().__init__(f"server asked to retry after {raw!r} (= {seconds:.0f} s), more than the {cap:.0f} s cap")
        self.seconds = seconds
        self.raw = raw
        self.cap = cap


def check_retry_after(seconds: float | None, raw: str | None, cap: float) -> None:
    """Raise ``RetryAfterTooLong`` when the server's Retry-After exceeds ``cap`` seconds."""
    if seconds is not None and seconds > cap:
        raise RetryAfterTooLong(seconds, raw or str(seconds), cap)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Parse an HTTP ``Retry-After`` header into seconds from ``now`` (never negative).

    Accepts ``delay-seconds`` (RFC 9110: digits; decimals are tolerated) and an HTTP-date
    (IMF-fixdate, and the obsolete RFC 850 / asctime forms ``email.utils`` understands).
    Returns ``None`` for a missing or unparseable value, so a garbage header falls back to the
    computed backoff instead of failing the call. A date in the past means "now" (0 s).
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if math.isnan(seconds) or math.isinf(seconds):
            return None
        return max(0.0, seconds)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:  # pragma: no cover - older Pythons returned None
        return None
    if when.tzinfo is None:  # "-0000" means UTC per RFC 5322
        when = when.replace(tzinfo=UTC)
    reference = now if now is not None else datetime.now(UTC)
    if reference.tzinfo is None:
        reference = reference.replace(tzinfo=UTC)
    return max(0.0, (when - reference).total_seconds())
