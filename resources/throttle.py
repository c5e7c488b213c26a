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
  budget it protects, and the client must not know the app database (README "Architecture").
  ``flock`` is atomic across processes, released by the kernel if a process dies holding it,
  and needs nothing installed. Scope: one host (the project's deployment: web + daemon + run
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
* A second phase guards *actual* starts: the state also keeps a second GCRA over the real
  start times, so scheduler jitter (a thread that wakes late, then its successor on time)
  cannot bunch requests up beyond what ``burst`` allows.
* Burst tolerance ``burst`` (``MOODLE_RATE_LIMIT_BURST`` in the client, in requests; the
  standard GCRA tolerance tau = ``burst`` x interval): a caller may start up to ``burst``
  intervals ahead of the nominal spacing, so a request that started late (a thread woke late
  under GIL contention, or every thread was busy in a slow request) is made up by the next
  ones instead of being lost for good. Guarantee: in any window of length w at most
  ``1 + burst + w x rate`` requests start, so the long-run rate never exceeds ``rate`` (the
  client passes the allowed rate x (1 - margin)). Trade-off: ``burst = 0`` is the old strict
  behaviour — no two starts ever closer than one interval, right for a strict proxy bucket of
  size 1, but every late wake-up is lost time. ``burst >= 1`` needs the proxy to accept a
  bucket of ``burst + 1`` requests (the emulator's default bucket = rps; common proxies allow
  more than 1); against a strict burst-1 proxy use 0 (and even then the server's own jitter
  causes a few 429s, see resources/moodle.py). Idle time beyond the tolerance is never banked.
  The measured effect of each burst value: ``benchmarks/results/client-throttle.md``.
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

# (TAT of the reservation grid, TAT of actual starts - interval): see acquire().
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

    ``rate <= 0`` disables the throttle (``acquire`` returns 0 immediately). ``burst``: how
    many requests a caller may run ahead of the nominal spacing to make up a late start
    (0 = strict spacing; see the module docstring).
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
        burst: float = 0.0,
    ) -> None:
        self.rate = float(rate)
        self.interval = 1.0 / self.rate if self.rate > 0 else 0.0
        if not burst >= 0:
            raise ValueError(f"burst must be >= 0, got {burst}")
        self.burst = float(burst)
        self.tolerance = self.burst * self.interval  # GCRA tau, seconds
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
                self.path,
                exc.strerror or exc,
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
            if tat != tat or tat > now + self._max_ahead:  # NaN or clock jumped back
                tat = now
            if last != last or last > now + self._max_ahead:
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
        interval, tau = self.interval, self.tolerance

        def step(tat: float, last: float, now: float) -> tuple[float, float, float]:
            # GCRA: start up to tau ahead of the grid; idle time beyond tau is not banked.
            start = max(now, tat - tau)
            return max(tat, now) + interval, last, start - now

        return self._update(step)

    def _claim_start(self) -> float:
        """Record ``now`` as an actual start unless it would run more than ``burst``
        intervals ahead of the actual starts so far; return the extra wait needed (0 when
        claimed). ``last`` is the actual-start GCRA's TAT minus one interval, so with
        ``burst = 0`` it is the previous actual start (no two starts closer than an interval)."""
        interval, tau = self.interval, self.tolerance

        def step(tat: float, last: float, now: float) -> tuple[float, float, float]:
            earliest = last + interval - tau
            if now + 1e-4 < earliest:
                return tat, last, earliest - now
            return tat, max(last + interval, now), 0.0

        return self._update(step)

    def acquire(self) -> float:
        """Block until this caller may send one request; return the seconds spent waiting.

        Phase 1 reserves a slot on the even grid (FIFO order, sleeping outside the lock).
        Phase 2 checks the *actual* starts: a caller that would run more than ``burst``
        intervals ahead of them waits the remainder. With ``burst = 0`` actual starts are never
        closer than one interval (a strict burst-1 proxy bucket sees no pair closer than the
        allowed rate) but a predecessor's late start is lost time; with ``burst >= 1`` it is
        made up, within the tolerance.
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

        tau = self.tolerance

        def step(tat: float, last: float, now: float) -> tuple[float, float, float]:
            # + tau: the tolerance must not let anyone start before the server's pause ends.
            return max(tat, now + seconds + tau), max(last, now + seconds - self.interval + tau), 0.0

        self._update(step)
