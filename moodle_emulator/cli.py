"""``moodle-integration emulator ...`` / ``python -m moodle_emulator ...``."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

DEFAULT_TOKEN = "demo-token-0123456789abcdef"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="moodle-integration emulator",
        description="Serve an emulated Moodle REST web service (see moodle_emulator/README.md).")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8089)
    p.add_argument("--scale", default="demo", choices=["empty", "demo", "real", "S", "M", "L"])
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--token", default=DEFAULT_TOKEN,
                   help="admin token (TOKEN-manager and TOKEN-reader get those presets; see README: tokens)")
    p.add_argument("--exception-style", default="4.5", choices=["4.4", "4.5"])
    p.add_argument("--debug", action="store_true", help="site debugging on: errors carry debuginfo")
    p.add_argument("--workers", type=int, default=None,
                   help="concurrent requests Moodle handles (1 = PHP built-in server; default unlimited)")
    p.add_argument("--simulate-cost", action="store_true", help="sleep the modelled Moodle server time")
    p.add_argument("--cost-scale", type=float, default=1.0, help="multiply simulated server time")
    p.add_argument("--rate-limit-rps", type=float, default=None, help="proxy rate limit per token (429)")
    p.add_argument("--price-type", default="number", choices=["number", "text", "none"],
                   help="type of the 'price' course custom field in generated datasets")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .server import EmulatorServer

    if args.workers is not None and args.workers < 1:
        print("error: --workers must be >= 1", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    emu = EmulatorServer(scale=args.scale, seed=args.seed, token=args.token, host=args.host, port=args.port,
                         exception_style=args.exception_style, debug=args.debug, workers=args.workers,
                         simulate_cost=args.simulate_cost, cost_scale=args.cost_scale,
                         rate_limit_rps=args.rate_limit_rps, price_type=args.price_type)
    summary = emu.dataset.summary()
    try:
        emu.start()
    except OSError as e:
        print(f"error: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 1
    print(f"Moodle emulator ({args.scale}, seed {args.seed}: {summary['courses']} courses, {summary['users']} users, "
          f"{summary['enrolments']} enrolments; built in {time.perf_counter() - t0:.1f}s)", flush=True)
    print(f"URL:      {emu.url}", flush=True)
    print(f"Endpoint: {emu.rest_url}", flush=True)
    print(f"Token:    {args.token}   (also {args.token}-manager, {args.token}-reader)", flush=True)
    print(f"Try:      curl '{emu.rest_url}?wstoken={args.token}&wsfunction=core_webservice_get_site_info"
          f"&moodlewsrestformat=json'", flush=True)
    stop = threading.Event()

    def _stop(signum, frame):
        stop.set()

    old = signal.signal(signal.SIGTERM, _stop)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, old)
        emu.stop()
        print("Moodle emulator stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
