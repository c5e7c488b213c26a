"""Infrastructure faults a hosted Moodle shows: proxy rate limits, 5xx bursts, latency,
dropped connections, truncated JSON, HTML error pages, permission glitches.

The whole configuration is replaced by ``POST /__emulator__/faults`` (``{}`` clears it);
see the README for the JSON shape. Everything here is thread-safe.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate

FAULT_KINDS = (
    "http_503", "http_502", "http_504", "http_429", "drop_connection", "truncated_json", "html_error",
    "ratelimit_payload",
)
RETRY_AFTER_FORMATS = ("seconds", "http-date", "none")
RATE_LIMIT_STYLES = ("http429", "moodle_payload")


class FaultConfigError(ValueError):
    pass


def retry_after_header(seconds: float, fmt: str) -> str | None:
    """``Retry-After`` value: whole seconds rounded up, or an IMF-fixdate HTTP date."""
    if fmt == "none":
        return None
    secs = max(0, math.ceil(seconds))
    if fmt == "http-date":
        # round the date up to the next whole second so a client never retries early
        return formatdate(math.ceil(time.time()) + secs, usegmt=True)
    return str(secs)


class TokenBucket:
    def __init__(self, rps: float, burst: float) -> None:
        self.rps = rps
        self.capacity = burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def take(self) -> float:
        """Consume one token; 0.0 if allowed, else seconds until one is available."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rps)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rps


@dataclass
class RateLimit:
    rps: float
    burst: float
    retry_after: str = "seconds"
    style: str = "http429"
    buckets: dict = field(default_factory=dict)

    def check(self, token: str) -> float:
        b = self.buckets.get(token)
        if b is None:
            b = self.buckets[token] = TokenBucket(self.rps, self.burst)
        return b.take()


@dataclass
class ScriptEntry:
    fault: str
    count: int = 1
    retry_after: float | None = None
    retry_after_format: str = "seconds"
    wsfunction: str | None = None
    after: int = 0
    status: int | None = None  # html_error only: 200 (default) or 500

    def to_json(self) -> dict:
        return {"fault": self.fault, "count": self.count, "retry_after": self.retry_after,
                "retry_after_format": self.retry_after_format, "wsfunction": self.wsfunction,
                "after": self.after, "status": self.status}


@dataclass
class FaultConfig:
    rate_limit: RateLimit | None = None
    latency_ms: float = 0.0
    script: list = field(default_factory=list)
    empty_lists: bool = False
    webservices_disabled: bool = False

    @classmethod
    def from_json(cls, data) -> "FaultConfig":
        if not isinstance(data, dict):
            raise FaultConfigError("fault config must be a JSON object")
        known = {"rate_limit", "latency_ms", "script", "empty_lists", "webservices_disabled"}
        extra = set(data) - known
        if extra:
            raise FaultConfigError(f"unknown fault config keys: {sorted(extra)}; allowed: {sorted(known)}")
        cfg = cls()
        rl = data.get("rate_limit")
        if rl:
            if not isinstance(rl, dict) or "rps" not in rl:
                raise FaultConfigError("rate_limit needs at least {'rps': <requests per second>}")
            try:
                rps = float(rl["rps"])
                burst = float(rl.get("burst") or max(1.0, rps))
            except (TypeError, ValueError):
                raise FaultConfigError("rate_limit.rps and rate_limit.burst must be numbers") from None
            if rps <= 0 or burst < 1:
                raise FaultConfigError("rate_limit.rps must be > 0 and burst >= 1")
            ra = rl.get("retry_after", "seconds")
            if ra not in RETRY_AFTER_FORMATS:
                raise FaultConfigError(f"rate_limit.retry_after must be one of {RETRY_AFTER_FORMATS}")
            style = rl.get("style", "http429")
            if style not in RATE_LIMIT_STYLES:
                raise FaultConfigError(f"rate_limit.style must be one of {RATE_LIMIT_STYLES}")
            cfg.rate_limit = RateLimit(rps, burst, ra, style)
        try:
            cfg.latency_ms = float(data.get("latency_ms") or 0)
        except (TypeError, ValueError):
            raise FaultConfigError("latency_ms must be a number") from None
        script = data.get("script") or []
        if not isinstance(script, list):
            raise FaultConfigError("script must be a list")
        for i, e in enumerate(script):
            if not isinstance(e, dict) or e.get("fault") not in FAULT_KINDS:
                raise FaultConfigError(f"script[{i}].fault must be one of {FAULT_KINDS}")
            extra = set(e) - {"fault", "count", "retry_after", "retry_after_format", "wsfunction", "after", "status"}
            if extra:
                raise FaultConfigError(f"script[{i}] has unknown keys {sorted(extra)}")
            fmt = e.get("retry_after_format", "seconds")
            if fmt not in RETRY_AFTER_FORMATS:
                raise FaultConfigError(f"script[{i}].retry_after_format must be one of {RETRY_AFTER_FORMATS}")
            try:
                entry = ScriptEntry(
                    fault=e["fault"], count=int(e.get("count", 1)),
                    retry_after=None if e.get("retry_after") is None else float(e["retry_after"]),
                    retry_after_format=fmt, wsfunction=e.get("wsfunction"), after=int(e.get("after", 0)),
                    status=None if e.get("status") is None else int(e["status"]),
                )
            except (TypeError, ValueError):
                raise FaultConfigError(f"script[{i}]: count/after/status must be integers, retry_after a number") from None
            if entry.count < 1 or entry.after < 0:
                raise FaultConfigError(f"script[{i}]: count must be >= 1 and after >= 0")
            cfg.script.append(entry)
        cfg.empty_lists = bool(data.get("empty_lists", False))
        cfg.webservices_disabled = bool(data.get("webservices_disabled", False))
        return cfg

    def to_json(self) -> dict:
        rl = self.rate_limit
        return {
            "rate_limit": None if rl is None else {"rps": rl.rps, "burst": rl.burst, "retry_after": rl.retry_after,
                                                   "style": rl.style},
            "latency_ms": self.latency_ms,
            "script": [e.to_json() for e in self.script],
            "empty_lists": self.empty_lists,
            "webservices_disabled": self.webservices_disabled,
        }


class FaultState:
    """Current fault config plus its mutable state (buckets, script progress)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.config = FaultConfig()

    def replace(self, cfg: FaultConfig) -> None:
        with self.lock:
            self.config = cfg

    def rate_limit_wait(self, token: str) -> tuple[float, RateLimit] | None:
        with self.lock:
            rl = self.config.rate_limit
            if rl is None:
                return None
            wait = rl.check(token)
        return (wait, rl) if wait > 0 else None

    def next_script_fault(self, wsfunction: str | None) -> ScriptEntry | None:
        """Consume the script for one request: the first unexhausted entry whose filter
        matches takes it; if that entry still has ``after`` pass-throughs left, the request
        goes through untouched."""
        with self.lock:
            for e in self.config.script:
                if e.count <= 0:
                    continue
                if e.wsfunction and e.wsfunction != wsfunction:
                    continue
                if e.after > 0:
                    e.after -= 1
                    return None
                e.count -= 1
                return e
        return None
