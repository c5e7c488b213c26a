"""The HTTP trigger under a bounded burst: 1,000 requests in 10 s from a local thread pool
against the production web process (split deployment, PostgreSQL), with the daemon running
the launched syncs meanwhile. No errors, no duplicate runs, latency recorded.

Figures are printed, and written to the file named by MOODLE_LOAD_RESULTS (if set), e.g.
`MOODLE_LOAD_RESULTS=tests/production/LOAD_RESULTS.md ./dev test tests/production/test_load.py -s`.
"""
from __future__ import annotations

import os
import random
import statistics
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest
import requests

from production_stack import SYNC_SECRET, TARGETS, TRIGGER

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

REQUESTS = 1000
SECONDS = 10.0
WORKERS = 32


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def test_trigger_burst_no_errors_no_duplicate_runs(prod):
    from moodle_assets.history import SyncHistory
    from moodle_assets.core.targets import SyncTarget
    from schedules.config_table import update_config

    for target in SyncTarget:
        update_config(prod.engine, target, enabled=False)
    history_before = {r.id for r in prod.history()}
    runs_before = prod.dagster_run_count()
    rng = random.Random(11)
    bodies = []
    for _ in range(REQUESTS):
        roll = rng.random()
        if roll < 0.5:
            bodies.append({"targets": [rng.choice(TARGETS)]})
        elif roll < 0.75:
            bodies.append({"targets": rng.sample(TARGETS, 2)})
        else:
            bodies.append(None)  # every due target: none is enabled, so all SKIPPED, nothing written

    local = threading.local()
    latencies: list[float] = []
    statuses: Counter = Counter()
    errors: list[str] = []
    outcomes: list[dict] = []
    lock = threading.Lock()
    t0 = time.monotonic() + 0.5

    def fire(i: int) -> None:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        time.sleep(max(0.0, t0 + i * SECONDS / REQUESTS - time.monotonic()))
        start = time.monotonic()
        try:
            r = local.session.post(prod.url + TRIGGER, json=bodies[i], headers={"x-sync-secret": SYNC_SECRET}, timeout=60)
            elapsed = time.monotonic() - start
            with lock:
                latencies.append(elapsed)
                statuses[r.status_code] += 1
                if r.status_code == 202:
                    outcomes.extend(r.json())
                else:
                    errors.append(f"{r.status_code}: {r.text[:200]}")
        except Exception as exc:  # a refused or timed-out connection is an error too
            with lock:
                errors.append(repr(exc))

    max_running: Counter = Counter()
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            per_target = Counter(r.target for r in SyncHistory(prod.engine).running())
            for target, n in per_target.items():
                max_running[target] = max(max_running[target], n)
            sampling.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(fire, range(REQUESTS)))
    finally:
        wall = time.monotonic() - t0
        sampling.set()
        sampler.join(10)

    prod.wait_idle(timeout=180)
    assert not errors, (len(errors), errors[:5])
    assert statuses == Counter({202: REQUESTS})
    assert all(n <= 1 for n in max_running.values()), max_running

    launched = [o for o in outcomes if o["outcome"] == "LAUNCHED"]
    skipped = [o for o in outcomes if o["outcome"] == "SKIPPED"]
    # No duplicate runs: one claimed row per launch, distinct per target, and the runs of one
    # target never overlapped in time.
    assert len({o["sync_run_id"] for o in launched}) == len(launched)
    new_rows = [r for r in prod.history() if r.id not in history_before]
    by_id = {r.id: r for r in new_rows}
    for target in TARGETS:
        spans = sorted((by_id[o["sync_run_id"]].started_at, by_id[o["sync_run_id"]].finished_at)
                       for o in launched if o["target"] == target)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), (target, spans)
    assert all(by_id[o["sync_run_id"]].status == "SUCCESS" for o in launched), \
        [(by_id[o["sync_run_id"]].target, by_id[o["sync_run_id"]].error) for o in launched if by_id[o["sync_run_id"]].status != "SUCCESS"]
    dagster_runs = prod.dagster_run_count() - runs_before
    assert dagster_runs == len({o["dagster_run_id"] for o in launched})
    assert all(r.status in ("SUCCESS", "SKIPPED") for r in new_rows)
    assert not SyncHistory(prod.engine).running()

    ms = [x * 1000 for x in latencies]
    p50, p95, p99 = (percentile(ms, q) for q in (50, 95, 99))
    lines = [
        "# Trigger endpoint under a burst (tests/production/test_load.py)",
        "",
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} on {os.cpu_count()} cores: web process, daemon and code server",
        "as separate processes, Dagster storage and app DB on PostgreSQL (Unix socket), the daemon running the launched syncs meanwhile.",
        "",
        "| requests | over | client threads | 202 | errors (non-202 or exception) | launched targets | Dagster runs | skipped | max RUNNING per target |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {REQUESTS} | {wall:.1f} s | {WORKERS} | {statuses[202]} | {len(errors)} | {len(launched)} | {dagster_runs} | {len(skipped)} | {max(max_running.values(), default=0)} |",
        "",
        "| latency | p50 | p95 | p99 | max | mean |",
        "|---|---|---|---|---|---|",
        f"| ms | {p50:.0f} | {p95:.0f} | {p99:.0f} | {max(ms):.0f} | {statistics.mean(ms):.0f} |",
        "",
        "Every launched sync ended SUCCESS; the syncs of one target never overlapped. The client offers",
        f"{REQUESTS / SECONDS:.0f} requests/s; the wall time above shows what one web process sustained on this box (the client,",
        "the daemon and the run workers share its cores). Each target was launched once its previous sync had finished;",
        "every other request for it was answered SKIPPED (already syncing) with its history row.",
    ]
    report = "\n".join(lines) + "\n"
    print("\n" + report)
    if os.environ.get("MOODLE_LOAD_RESULTS"):
        with open(os.environ["MOODLE_LOAD_RESULTS"], "w") as handle:
            handle.write(report)
