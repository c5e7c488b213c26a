"""Where a sync's wall time goes, phase by phase: ``python -m benchmarks.phases URL DB_URL [--emulator-pid PID]``.

Runs the three engine functions (as the benchmark's ``project`` approach does) into DB_URL, a
full sync then a no-change re-sync, against an emulator already serving URL (``python -m
moodle_emulator --scale M --port 8931 --token bench-token-7f3a9c0e5b``), and prints per step
its wall and CPU time; for the enrolment step the fetch phase (first request to the last
course staged and diffed) apart from the apply phase (the write transaction), and the time
each bulk insert took per table; with ``--emulator-pid``, the CPU the emulator spent (on a
2-core machine it competes with the sync for the same cores).
Measurement only: it wraps ``insert_raw`` to time it, nothing else changes.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any


def _cpu_of(pid: int | None) -> float:
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, clock ticks


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.phases", description=__doc__.splitlines()[0])
    p.add_argument("url")
    p.add_argument("db_url")
    p.add_argument("--token", default="bench-token-7f3a9c0e5b")
    p.add_argument("--emulator-pid", type=int, default=None)
    args = p.parse_args(argv)

    from moodle_assets.store import changelog, raw, upserts
    from moodle_assets.store.db import create_app_engine
    from moodle_assets.store.migrate import upgrade
    from moodle_assets.sync.engine import sync_course_catalog, sync_enrollments, sync_user_directory
    from moodle_assets.sync.fetch import MoodleFetcher
    from moodle_assets.sync.options import SyncOptions
    from resources.moodle_client import MoodleClient

    inserts: Counter[str] = Counter()
    insert_raw = raw.insert_raw

    def timed_insert(session: Any, table: str, columns: Any, rows: Any) -> None:
        started = time.perf_counter()
        insert_raw(session, table, columns, rows)
        inserts[table] += time.perf_counter() - started

    upserts.insert_raw = timed_insert  # type: ignore[assignment]
    changelog.insert_raw = timed_insert  # type: ignore[assignment]

    options = SyncOptions()
    client = MoodleClient(args.url, args.token, requests_per_second=0, throttle_dir=tempfile.mkdtemp())
    fetcher = MoodleFetcher(client, enrolment_page_size=options.enrolment_page_size,
                            user_id_page_size=options.user_id_page_size, user_batch_size=options.user_batch_size)
    upgrade(args.db_url)
    engine = create_app_engine(args.db_url)
    for phase in ("full sync", "re-sync"):
        total = time.perf_counter()
        print(f"{phase}:")
        for step in (sync_course_catalog, sync_user_directory, sync_enrollments):
            inserts.clear()
            last_course = [0.0]
            kwargs: dict[str, Any] = {}
            if step is sync_enrollments:
                def staged(_done: int, _all: int, mark: list[float] = last_course) -> None:
                    mark[0] = time.perf_counter()

                kwargs["on_progress"] = staged
            started, cpu, emulator = time.perf_counter(), time.process_time(), _cpu_of(args.emulator_pid)
            outcome = step(fetcher, engine, options, **kwargs)
            wall = time.perf_counter() - started
            line = (f"  {step.__name__:<22} wall {wall:5.2f} s  cpu {time.process_time() - cpu:5.2f} s  "
                    f"emulator cpu {_cpu_of(args.emulator_pid) - emulator:5.2f} s  fetched {outcome.counts.fetched}")
            if last_course[0]:
                applied = time.perf_counter() - last_course[0]
                line += f"  (fetch phase {last_course[0] - started:.2f} s, apply {applied:.2f} s)"
            print(line)
            if inserts:
                print("    inserts: " + ", ".join(f"{t} {s:.2f} s" for t, s in inserts.most_common()))
        print(f"  total {time.perf_counter() - total:.2f} s, {client.snapshot()['requests_total']} requests so far")
    client.close()
    engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
