"""This project: the sync engine (Dagster-free, as the assets call it), full sync then re-sync.

The three engine functions run in dependency order (catalog, users, enrolments) with the
production client (host throttle, retries) and the default ``SyncOptions`` (4 courses at
once). Every request the full sync sends is logged (function + form fields, never the token)
so the physical-limit child can replay exactly the same requests.
"""
from __future__ import annotations

import json
import tempfile
import time
from typing import Any

from sqlalchemy import func, select

from benchmarks.common import Emulator, WriteCounter, dump, peak_rss_mb, phase


def _counts(outcomes) -> dict[str, int]:
    total = {"fetched": 0, "inserted": 0, "updated": 0, "unchanged": 0, "deactivated": 0, "rejected": 0, "unmatched": 0}
    for o in outcomes:
        for k in total:
            total[k] += getattr(o.counts, k)
    return total


def run(cfg: dict[str, Any]) -> dict[str, Any]:
    from moodle_assets.store.db import create_app_engine, transaction
    from moodle_assets.store.models import CourseCatalog, UserCourseEnrollment
    from moodle_assets.store.upserts import table_counts
    from moodle_assets.sync.engine import sync_course_catalog, sync_enrollments, sync_user_directory
    from moodle_assets.sync.fetch import MoodleFetcher
    from moodle_assets.sync.options import SyncOptions
    from resources.moodle_client import MoodleClient, encode_params

    out: dict[str, Any] = {"approach": "project", "rss_after_imports_mb": peak_rss_mb(), "driver": "engine functions (no Dagster)"}
    emulator = Emulator(cfg["url"])
    rps = float(cfg.get("rps") or 0)
    client = MoodleClient(cfg["url"], cfg["token"], requests_per_second=rps,
                          throttle_dir=tempfile.mkdtemp(prefix="bench-throttle-"))
    log: list[tuple[str, list]] = []
    recording = {"on": True}
    original = client.call

    def recorded_call(wsfunction, params=None, **kwargs):
        if recording["on"]:
            log.append((wsfunction, encode_params(params)))
        return original(wsfunction, params, **kwargs)

    client.call = recorded_call  # paginate() calls self.call: every page is logged
    # The change log's cost: compare a run with `changelog_retention_days: 0` (log off) in cfg.
    options = SyncOptions(
        changelog_retention_days=int(cfg.get("changelog_retention_days", SyncOptions().changelog_retention_days))
    )
    out["changelog_retention_days"] = options.changelog_retention_days
    fetcher = MoodleFetcher(client, enrolment_page_size=options.enrolment_page_size,
                            user_id_page_size=options.user_id_page_size, user_batch_size=options.user_batch_size)
    engine = create_app_engine(cfg["db_url"])
    writes = WriteCounter().attach(engine)
    targets = (sync_course_catalog, sync_user_directory, sync_enrollments)

    for name in ("full", "resync"):
        writes.reset()
        client.metrics.reset()
        with phase(emulator, out, name) as rec:
            step_times: dict[str, float] = {}
            step_rss: dict[str, float] = {}
            outcomes = []

            for fn in targets:
                t = time.perf_counter()
                outcomes.append(fn(fetcher, engine, options))
                step_times[fn.__name__] = round(time.perf_counter() - t, 3)
                step_rss[fn.__name__] = peak_rss_mb()
        rec["steps_s"] = step_times
        rec["peak_rss_mb_after_step"] = step_rss  # which target drives the peak
        rec["counts"] = _counts(outcomes)
        rec["rows_written"] = rec["counts"]["inserted"] + rec["counts"]["updated"] + rec["counts"]["deactivated"]
        rec["db_writes"] = writes.snapshot()
        snap = client.snapshot()
        rec["client"] = {k: snap[k] for k in ("requests_total", "retries", "responses_429", "backoff_seconds", "throttle_wait_seconds")}
        rec["client"]["requests_by_function"] = snap["requests_by_function"]
        dump(out, cfg["result"])  # a partial result survives a timeout in the next phase
        if name == "full":
            recording["on"] = False
            with open(cfg["request_log"], "w") as fh:
                json.dump(log, fh)
    with transaction(engine) as session:
        out["table_rows"] = table_counts(session)
        enrolled = select(UserCourseEnrollment.course_id).distinct()
        out["courses_without_enrolments"] = session.scalar(
            select(func.count()).select_from(CourseCatalog)
            .where(CourseCatalog.is_active.is_(True), CourseCatalog.id.not_in(enrolled))
        )
    out["concurrency"] = options.concurrency
    out["page_sizes"] = {"enrolments": options.enrolment_page_size, "user_ids": options.user_id_page_size,
                         "user_batch": options.user_batch_size}
    client.close()
    engine.dispose()
    return out
