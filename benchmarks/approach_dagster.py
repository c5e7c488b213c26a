"""This project through Dagster: the ``sync_all`` job executed in process (ephemeral instance),
full sync then re-sync. Compared with the ``project`` approach (the bare engine) on the same
scale and backend, the difference is Dagster's fixed overhead per run: definitions, resource
set-up, event log, run-history rows, metadata and asset checks.
"""
from __future__ import annotations

import os
import tempfile
from typing import Any

from benchmarks.common import Emulator, WriteCounter, dump, peak_rss_mb, phase


def run(cfg: dict[str, Any]) -> dict[str, Any]:
    os.environ.update({
        "MOODLE_URL": cfg["url"], "MOODLE_TOKEN": cfg["token"], "DATABASE_URL": cfg["db_url"],
        "MOODLE_RATE_LIMIT_REQUESTS_PER_SECOND": str(cfg.get("rps") or 0),
        "MOODLE_THROTTLE_DIR": tempfile.mkdtemp(prefix="bench-throttle-"),
        "MOODLE_INTEGRATION_DATA_DIR": tempfile.mkdtemp(prefix="bench-data-"),
    })
    from dagster import DagsterInstance

    from moodle_assets.definitions import defs
    from moodle_assets.store.db import engine_for

    out: dict[str, Any] = {"approach": "dagster", "rss_after_imports_mb": peak_rss_mb(),
                           "driver": "sync_all job, execute_in_process, ephemeral instance"}
    emulator = Emulator(cfg["url"])
    job = defs.resolve_job_def("sync_all")
    writes = WriteCounter().attach(engine_for(cfg["db_url"]))
    with DagsterInstance.ephemeral() as instance:
        for name in ("full", "resync"):
            writes.reset()
            with phase(emulator, out, name) as rec:
                result = job.execute_in_process(instance=instance, raise_on_error=True)
            counts = {"inserted": 0, "updated": 0, "deactivated": 0}
            for event in result.get_asset_materialization_events():
                meta = event.step_materialization_data.materialization.metadata
                for k in counts:
                    v = meta.get(f"rows_{k}")
                    counts[k] += int(v.value) if v is not None and v.value is not None else 0
            rec["counts"] = counts
            rec["rows_written"] = sum(counts.values())
            rec["db_writes"] = writes.snapshot()  # includes the integration_sync_run history rows
            dump(out, cfg["result"])
    return out
