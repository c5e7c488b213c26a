"""A request-rate throttle shared by every thread and process on the host.

Design: GCRA (the "generic cell rate algorithm", a token bucket written as one number) with
its state in a small file, updated under ``fcntl.flock``.

* The state is one float, the *theoretical arrival time* (TAT): the earliest moment the next
  request may start. ``acquire()`` takes the exclusive lock, reads TAT, reserves the slot
  ``start = max(now, TAT)``, writes ``TAT = start + interval`` and releases the lock, then
  sleeps until ``start`` *outside* the lock. Critical sections are microseconds, so a dozen
  threads and processes queue up in FIFO-ish order and the host as a whole sends requests
  evenly spaced at ``rate`` — no bursts, which is what a strict proxy bucket wants.
* Why a file and not a Dagster pool or the app database: the budget belongs to the *Moodle
  site*, not to a job — a pool limits concurrent runs, not requests per second, and a run of
  ``sync_course_catalog`` and one of ``sync_enrollments`` (separate processes launched by the
  daemon) must share it. A database round trip per request would cost more than the request
  budget it protects, and the client must not know the app database (design.md layering).
  ``flock`` is atomic across processes, released by the kernel if a process dies holding it,
  and needs nothing installed. Scope: one host (the design's deployment: web + daemon + run
  workers on one machine). Several hosts would need a network store (Redis) — not built.
* The file is keyed by a SHA-256 of the normalised site URL (never the token), so syncs of
  different Moodle sites do not slow each other down, while every client of one site shares
  one budget. Directory: ``MOODLE_THROTTLE_DIR`` (default ``<tempdir>/moodle-integration-throttle``).
* Each ``acquire`` opens its own file descriptor: ``flock`` locks belong to the open file
  description, so a shared descriptor would not exclude threads (or a forked child) from
  each other. Opening per call costs ~20 µs, nothing next to an HTTP round trip.
* Wall-clock time (``time.time``) is used because the state outlives processes; if the clock
  jumps backwards, a TAT implausibly far in the future is clamped so no caller sleeps for the
  size of the jump.
* A second phase guards *actual* starts: the state also keeps the last real start time, and
  a caller whose predecessor overslept its slot waits the remainder, so no two requests ever
  start closer than one interval (scheduler jitter would otherwise bunch them up).
* If the directory is not writable (another user's, read-only), the throttle logs a warning
  and limits this process alone rather than failing the sync.
* ``penalize(seconds)`` pushes TAT forward when the server says "Retry-After": every thread
  and process then pauses, not just the one that was told.
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

# (TAT, last actual start): see acquire().
_STATE = struct.Struct("<dd")
logger = logging.getLogger("resources.moodle")
DEFAULT_DIR_NAME = "moodle-integration-throttle"


def default_throttle_dir() -> Path:
    return Path(tempfile.gettempdir()) / DEFAULT_DIR_NAME


def site_key(url: str) -> str:
    """Stable key for a Moodle site: scheme + lower-cased host[:port] + path, hashed."""
    parts = urlsplit(url.strip())
    normal = f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path.rstrip('/')}"
    return hashlib.sha256(normal.encode("utf-8")).hexdigest()[:24]


class HostThrottle:
    """Evenly spaces request starts at ``rate`` per second across threads and processes.

    ``rate <= 0`` disables the throttle (``acquire`` returns 0 immediately).
    """

    def __init__(
        self,
        url: str,
        rate: float,
        directory: str | os.PathLike[str] | None = None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        max_ahead: float = 600.0,
    ) -> None:
        self.rate = float(rate)
        self.interval = 1.0 / self.rate if self.rate > 0 else 0.0
        self.directory = Path(directory) if directory else default_throttle_dir()
        self.path = self.directory / f"moodle-{site_key(url)}.gcra"
        self._clock = clock
        self._sleep = sleep
        # A TAT further ahead than this is a clock that jumped back, not a real queue: reset.
        self._max_ahead = max(max_ahead, self.interval * 4)
        # Fallback when the state file cannot be used (read-only or foreign-owned directory):
        # an in-process state, so this process still stays under the rate on its own.
        self._local_lock = threading.Lock()
        self._local_state = (0.0, 0.0)
        self._local_only = False
        if self.enabled:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                self._fall_back(exc)

    def _fall_back(self, exc: OSError) -> None:
        if not self._local_only:
            self._local_only = True
            logger.warning(
                "moodle throttle: cannot use %s (%s); throttling this process only — set MOODLE_THROTTLE_DIR "
                "to a directory every sync process can write",
                self.path, exc.strerror or exc,
            )

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def _update(self, fn: Callable[[float, float, float], tuple[float, float, float]]) -> float:
        """Under the exclusive lock: read (TAT, last start), ``fn(tat, last, now)`` →
        ``(new_tat, new_last, result)``, write them back, return ``result``."""
        if not self._local_only:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                self._fall_back(exc)
        if self._local_only:
            with self._local_lock:
                now = self._clock()
                tat, last = self._local_state
                new_tat, new_last, result = fn(min(tat, now + self._max_ahead), last, now)
                self._local_state = (new_tat, new_last)
                return result
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.pread(fd, _STATE.size, 0)
            now = self._clock()
            tat, last = _STATE.unpack(raw) if len(raw) == _STATE.size else (0.0, 0.0)
            if not tat == tat or tat > now + self._max_ahead:  # NaN or clock jumped back
                tat = now
            if not last == last or last > now + self._max_ahead:
                last = 0.0
            new_tat, new_last, result = fn(tat, last, now)
            os.pwrite(fd, _STATE.pack(new_tat, new_last), 0)
            return result
        finally:
            os.close(fd)  # closing releases the flock

    def reserve(self) -> float:
        """Reserve the next slot; return how long the caller must wait before sending."""
        if not self.enabled:
            return 0.0
        interval = self.interval

        def step(tat: float, last: float, now: float) -> tuple[float, float, float]:
            start = max(now, tat)
            return start + interval, last, start - now

        return self._update(step)

    def _claim_start(self) -> float:
        """Record ``now`` as an actual start unless the previous actual start was less than
        one interval ago; return the extra wait needed (0 when claimed)."""
        interval = self.interval

        def step(tat: float, last: float, now: float) -> tuple[float, float, float]:
            earliest = last + interval
            if now + 1e-4 < earliest:
                return tat, last, earliest - now
            return tat, now, 0.0

        return self._update(step)

    def acquire(self) -> float:
        """Block until this caller may send one request; return the seconds spent waiting.

        Phase 1 reserves a slot on the even grid (FIFO order, sleeping outside the lock).
        Phase 2 checks the *actual* start of the previous request: if a predecessor overslept
        its slot (scheduler jitter on a busy host), this caller waits for the remainder, so
        actual starts are never closer than one interval — a strict proxy bucket (burst 1)
        sees no pair of requests closer than the allowed rate.
        """
        if not self.enabled:
            return 0.0
        waited = 0.0
        wait = self.reserve()
        while True:
            if wait > 0:
                self._sleep(wait)
                waited += wait
            wait = self._claim_start()
            if wait <= 0:
                return waited

    def penalize(self, seconds: float) -> None:
        """Make every caller on the host wait at least ``seconds`` from now (server said so)."""
        if not self.enabled or seconds <= 0:
            return
        seconds = min(seconds, self._max_ahead)

        def step(tat: float, last: float, now: float) -> tuple[float, float, float]:
            return max(tat, now + seconds), max(last, now + seconds - self.interval), 0.0

        self._update(step)
