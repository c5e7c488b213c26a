"""Helpers shared by the benchmark's child processes (one approach per process)."""
from __future__ import annotations

import json
import resource
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests

WRITE_VERBS = ("INSERT", "UPDATE", "DELETE", "MERGE", "COPY")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


class WriteCounter:
    """Counts write statements (and the rows they report) on one engine or on every engine.

    ``executemany`` counts once per statement call; ``rows`` sums the DB-API rowcount where the
    driver reports one (>= 0); ``statements_changing_rows`` leaves out statements that matched
    no row (e.g. the engine's "close enrolments of inactive courses" sweep when there are none).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.statements = 0
        self.effective = 0  # statements that changed at least one row (rowcount > 0)
        self.rows = 0
        self.by_verb: dict[str, int] = {}

    def attach(self, target: Any) -> "WriteCounter":
        from sqlalchemy import event

        event.listen(target, "after_cursor_execute", self._after)
        return self

    def _after(self, conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else ""
        if verb not in WRITE_VERBS:
            return
        count = getattr(cursor, "rowcount", -1)
        with self._lock:
            self.statements += 1
            self.by_verb[verb] = self.by_verb.get(verb, 0) + 1
            if isinstance(count, int) and count > 0:
                self.rows += count
                self.effective += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"statements": self.statements, "statements_changing_rows": self.effective, "rows": self.rows,
                    "by_verb": dict(self.by_verb)}


class Emulator:
    """The emulator's control API (no token), used between measured phases only."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")

    def reset(self) -> None:
        requests.post(f"{self.url}/__emulator__/counters/reset", timeout=10).raise_for_status()

    def counters(self) -> dict[str, Any]:
        answer = requests.get(f"{self.url}/__emulator__/counters", timeout=10)
        answer.raise_for_status()
        c = answer.json()
        return {
            "requests": c.get("requests_total", 0),
            "by_function": c.get("by_function", {}),
            "responses_429": c.get("responses_429", 0),
            "server_time_ms": round(float(c.get("server_time_ms", 0.0)), 1),
            "peak_concurrency": c.get("peak_concurrency"),
        }

    def dataset(self) -> dict[str, Any]:
        answer = requests.get(f"{self.url}/__emulator__/dataset", timeout=10)
        answer.raise_for_status()
        return answer.json()


@contextmanager
def phase(emulator: Emulator, out: dict[str, Any], name: str) -> Iterator[dict[str, Any]]:
    """Measure one phase: emulator counters reset before, read after; wall time in between."""
    emulator.reset()
    record: dict[str, Any] = {}
    started = time.perf_counter()
    try:
        yield record
    finally:
        record["wall_s"] = round(time.perf_counter() - started, 3)
        record["server"] = emulator.counters()
        record["peak_rss_mb"] = peak_rss_mb()
        out[name] = record


def dump(result: dict[str, Any], path: str) -> None:
    with open(path, "w") as fh:
        json.dump(result, fh, indent=1, default=str)
