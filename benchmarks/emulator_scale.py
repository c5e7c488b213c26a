"""Generation time and peak memory of the Moodle emulator at a given scale.

    .venv/bin/python benchmarks/emulator_scale.py --scale L

Builds the dataset, starts the HTTP server, then serves: site info, all courses, the
biggest course's participants (all fields), and ``core_user_get_users`` email=% (every
user in ONE response, streamed). Prints peak RSS (``ru_maxrss``) after each step, as JSON.
Not part of the test suite (scale L takes a few seconds and ~100 MB).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests  # noqa: E402

from moodle_emulator import EmulatorServer, build_dataset  # noqa: E402
from moodle_emulator.generator import compact_arrays_bytes  # noqa: E402


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--scale", default="L", choices=["demo", "S", "M", "L"])
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args(argv)
    out: dict = {"scale": args.scale, "python": sys.version.split()[0], "baseline_peak_rss_mb": round(peak_mb(), 1)}
    t0 = time.perf_counter()
    ds = build_dataset(args.scale, args.seed)
    out["generate_s"] = round(time.perf_counter() - t0, 2)
    out["after_generate_peak_rss_mb"] = round(peak_mb(), 1)
    out["enrolment_array_mb"] = round(compact_arrays_bytes(ds) / 2**20, 1)
    out["summary"] = {k: v for k, v in ds.summary().items() if k in ("courses", "users", "enrolments", "active_enrolments")}
    with EmulatorServer(dataset=ds, token="bench") as emu:
        s = requests.Session()

        def call(fn, **params):
            t = time.perf_counter()
            r = s.post(emu.rest_url, data={"wstoken": "bench", "wsfunction": fn, "moodlewsrestformat": "json", **params},
                       timeout=600, stream=True)
            r.raise_for_status()
            n = sum(len(chunk) for chunk in r.iter_content(1 << 16))  # don't hold the body client-side
            return time.perf_counter() - t, n

        steps = {}
        steps["site_info"] = call("core_webservice_get_site_info")
        steps["get_courses"] = call("core_course_get_courses")
        big = max((c for c in ds.enrolments if c != 1), key=lambda c: len(ds.enrolments[c]))
        steps[f"enrolled_users_course_{big}_all_fields"] = call("core_enrol_get_enrolled_users", courseid=str(big))
        steps["get_users_email_all"] = call("core_user_get_users", **{"criteria[0][key]": "email",
                                                                      "criteria[0][value]": "%"})
        out["requests"] = {k: {"seconds": round(t, 2), "bytes": n} for k, (t, n) in steps.items()}
        out["charged_server_time_s"] = round(emu.counters.snapshot()["server_time_ms"] / 1000, 1)
    out["final_peak_rss_mb"] = round(peak_mb(), 1)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
