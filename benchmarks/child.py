"""One approach in its own process: ``python -m benchmarks.child CONFIG.json``.

Its peak RSS (``ru_maxrss``) is therefore that approach's alone. The result (or the error)
is written to ``config["result"]`` as JSON.
"""
from __future__ import annotations

import json
import sys
import time
import traceback

from benchmarks.common import dump, peak_rss_mb

APPROACHES = {
    "project": "benchmarks.approach_project",
    "naive": "benchmarks.approach_naive",
    "dlt": "benchmarks.approach_dlt",
    "limit": "benchmarks.approach_limit",
    "dagster": "benchmarks.approach_dagster",
}


def main(argv: list[str]) -> int:
    with open(argv[0]) as fh:
        cfg = json.load(fh)
    started = time.perf_counter()
    try:
        import importlib

        module = importlib.import_module(APPROACHES[cfg["approach"]])
        result = module.run(cfg)
        code = 0
    except Exception as exc:  # reported in the results, not swallowed
        result = {"approach": cfg["approach"], "error": f"{type(exc).__name__}: {exc}",
                  "traceback": traceback.format_exc()[-4000:]}
        code = 1
    result["process_peak_rss_mb"] = peak_rss_mb()
    result["process_wall_s"] = round(time.perf_counter() - started, 3)
    dump(result, cfg["result"])
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
