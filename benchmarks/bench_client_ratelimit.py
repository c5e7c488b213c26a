"""Benchmark: how close does the Moodle client get to a proxy's rate limit without tripping it?

Starts the bundled emulator (or uses --url/--token of a running one), turns on its proxy
rate limit (token bucket, --rps per second, --burst), then fires --requests calls through
``MoodleClient`` from --threads threads with the client's host throttle set to the same
allowed rate. Prints the achieved request rate as a ratio of the allowed rate and the number
of 429s the server sent (from the emulator's counters and the client's metrics).

    .venv/bin/python benchmarks/bench_client_ratelimit.py                # 200 requests at 20 rps
    .venv/bin/python benchmarks/bench_client_ratelimit.py --burst 1 --margin 0
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from resources.moodle_client import DEFAULT_THROTTLE_MARGIN, MoodleClient, MoodleError  # noqa: E402 (no Dagster import)


def _control(url: str, path: str, payload=None):
    target = f"{url}/__emulator__/{path}"
    if payload is None:
        r = requests.get(target, timeout=5)
    else:
        r = requests.post(target, json=payload, timeout=5)
    r.raise_for_status()
    return r.json() if r.content else None


@contextlib.contextmanager
def _emulator(args):
    if args.url:
        yield args.url, args.token
        return
    from moodle_emulator import EmulatorServer

    with EmulatorServer(scale="real", token=args.token) as emu:
        yield emu.url, emu.token


def run(args) -> dict:
    with _emulator(args) as (url, token), tempfile.TemporaryDirectory() as tdir:
        _control(url, "faults", {"rate_limit": {"rps": args.rps, "burst": args.burst, "retry_after": "seconds"},
                                 "latency_ms": args.latency_ms})
        _control(url, "counters/reset", {})
        client = MoodleClient(url, token, requests_per_second=args.rps, throttle_margin=args.margin,
                              throttle_dir=tdir, max_retries=args.max_retries, base_delay_ms=100, max_delay_ms=2000,
                              pool_size=args.threads)
        errors = 0

        def one(_):
            nonlocal errors
            try:
                client.webservice_post(args.wsfunction)
            except MoodleError:
                errors += 1

        started = time.monotonic()
        with ThreadPoolExecutor(args.threads) as pool:
            list(pool.map(one, range(args.requests)))
        elapsed = time.monotonic() - started
        server = _control(url, "counters")
        _control(url, "faults", {})
        snap = client.snapshot()
        client.close()
        achieved = snap["requests_total"] / elapsed
        return {
            "requests": args.requests,
            "threads": args.threads,
            "allowed_rps": args.rps,
            "burst": args.burst,
            "margin": args.margin,
            "elapsed_s": round(elapsed, 3),
            "achieved_rps": round(achieved, 3),
            "ratio_achieved_to_allowed": round(achieved / args.rps, 4),
            "responses_429_server": server.get("responses_429"),
            "responses_429_client": snap["responses_429"],
            "retries": snap["retries"],
            "errors": errors,
            "throttle_wait_s": snap["throttle_wait_seconds"],
        }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", help="a running emulator's base URL (default: start one)")
    p.add_argument("--token", default="bench-token-0123456789abcdef0123")
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--rps", type=float, default=20.0)
    p.add_argument("--burst", type=float, default=None, help="proxy bucket size (default: emulator default = rps)")
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--margin", type=float, default=DEFAULT_THROTTLE_MARGIN)
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--max-retries", type=int, default=3)
    p.add_argument("--wsfunction", default="core_webservice_get_site_info")
    p.add_argument("--json", action="store_true", help="print one JSON line")
    args = p.parse_args(argv)
    result = run(args)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['requests']} requests, {result['threads']} threads, proxy limit {args.rps:g} rps "
              f"(burst {args.burst if args.burst is not None else 'default'}), throttle margin {args.margin:g}")
        print(f"achieved {result['achieved_rps']:.2f} rps = {result['ratio_achieved_to_allowed']:.3f} of allowed; "
              f"429s received: {result['responses_429_server']} (client saw {result['responses_429_client']}), "
              f"retries {result['retries']}, errors {result['errors']}, elapsed {result['elapsed_s']:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
