"""The physical limit, measured: the project's exact requests with a bare client, and a raw
bulk insert of the project's rows.

* Bare fetch: replays the request log written by the project child (same functions, same
  form fields, same order) with plain ``requests.Session`` keep-alive, reading each body and
  nothing else: once with the sync's concurrency (threads pulling from one queue, one session
  each) and once back-to-back on one connection. JSON decoding of all bodies is timed apart.
* Raw insert: the four data tables the project wrote, copied row for row into a fresh,
  migrated database of the same backend in one transaction: ``executemany`` on SQLite,
  ``COPY ... FROM STDIN`` on PostgreSQL. Reading the source rows is not timed.
"""
from __future__ import annotations

import io
import json
import threading
import time
from typing import Any

import requests

from benchmarks.common import Emulator, peak_rss_mb

TABLES = ("course_category", "course_catalog", "users", "user_course_enrollment")


def _replay(endpoint: str, token: str, log: list, concurrency: int) -> tuple[float, list[bytes]]:
    bodies: list[bytes | None] = [None] * len(log)
    lock = threading.Lock()
    cursor = iter(range(len(log)))

    def worker() -> None:
        session = requests.Session()
        while True:
            with lock:
                i = next(cursor, None)
            if i is None:
                break
            wsfunction, fields = log[i]
            data = [("wstoken", token), ("wsfunction", wsfunction), ("moodlewsrestformat", "json")] + [tuple(f) for f in fields]
            r = session.post(endpoint, data=data, timeout=300)
            if r.status_code != 200:
                raise RuntimeError(f"{wsfunction}: HTTP {r.status_code}")
            bodies[i] = r.content
        session.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(max(1, concurrency))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, bodies  # type: ignore[return-value]


def _raw_insert(source_url: str, target_url: str) -> dict[str, Any]:
    from sqlalchemy import create_engine

    from moodle_assets.store.db import normalize_url

    src = create_engine(normalize_url(source_url))
    dst = create_engine(normalize_url(target_url))
    rows_total = 0
    per_table: dict[str, int] = {}
    if src.dialect.name == "sqlite":
        s = src.raw_connection()
        data = {}
        for table in TABLES:
            cur = s.cursor()
            cur.execute(f"SELECT * FROM {table}")
            data[table] = ([d[0] for d in cur.description], cur.fetchall())
        s.close()
        d = dst.raw_connection()
        c = d.cursor()
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=NORMAL")
        started = time.perf_counter()
        for table in TABLES:
            cols, rows = data[table]
            c.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows)
            per_table[table] = len(rows)
        d.commit()
        elapsed = time.perf_counter() - started
        d.close()
    else:
        s = src.raw_connection()
        buffers = {}
        for table in TABLES:
            buf = io.StringIO()
            cur = s.cursor()
            cur.copy_expert(f"COPY {table} TO STDOUT", buf)
            cur.execute(f"SELECT count(*) FROM {table}")
            per_table[table] = cur.fetchone()[0]
            buffers[table] = buf
        s.close()
        d = dst.raw_connection()
        c = d.cursor()
        started = time.perf_counter()
        for table in TABLES:
            buffers[table].seek(0)
            c.copy_expert(f"COPY {table} FROM STDIN", buffers[table])
        d.commit()
        elapsed = time.perf_counter() - started
        d.close()
    rows_total = sum(per_table.values())
    src.dispose()
    dst.dispose()
    return {"insert_s": round(elapsed, 3), "rows": rows_total, "rows_by_table": per_table,
            "method": "executemany" if src.dialect.name == "sqlite" else "COPY FROM STDIN"}


def run(cfg: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"approach": "limit", "rss_after_imports_mb": peak_rss_mb()}
    emulator = Emulator(cfg["url"])
    with open(cfg["request_log"]) as fh:
        log = json.load(fh)
    endpoint = cfg["url"].rstrip("/") + "/webservice/rest/server.php"
    out["requests"] = len(log)
    emulator.reset()
    concurrent_s, bodies = _replay(endpoint, cfg["token"], log, cfg.get("concurrency", 4))
    out["fetch_concurrent_s"] = round(concurrent_s, 3)
    out["server"] = emulator.counters()
    out["response_bytes"] = sum(len(b) for b in bodies)
    started = time.perf_counter()
    for b in bodies:
        json.loads(b)
    out["json_decode_s"] = round(time.perf_counter() - started, 3)
    del bodies
    serial_s, bodies = _replay(endpoint, cfg["token"], log, 1)
    out["fetch_serial_s"] = round(serial_s, 3)
    del bodies
    out["raw_insert"] = _raw_insert(cfg["source_db_url"], cfg["raw_db_url"])
    out["limit_s"] = round(min(concurrent_s, serial_s) + out["raw_insert"]["insert_s"], 3)
    out["peak_rss_mb"] = peak_rss_mb()
    return out
