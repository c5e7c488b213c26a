"""The demo wiring: the bundled Moodle emulator for `serve` without `MOODLE_URL`, and the
`emulator` command. The only place the product imports the emulator (`moodle_emulator`, a
top-level package of the source checkout that is not part of the installed wheel)."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any

from ..core.targets import SyncTarget

DEMO_EMULATOR_PORT = 8089
DEMO_TOKEN = "demo-moodle-token"  # only ever valid for the local demo emulator
DEMO_REQUESTS_PER_SECOND = 50
DEMO_FREQUENCIES = {SyncTarget.COURSE_CATALOG: 60, SyncTarget.USER_DIRECTORY: 30, SyncTarget.ENROLLMENTS: 15}
NOT_INSTALLED = (
    "the bundled Moodle emulator is not part of this installation (it ships with the source "
    "checkout: run `./dev serve` or `python -m moodle_emulator` there); set MOODLE_URL and MOODLE_TOKEN to use "
    "your Moodle site"
)


class EmulatorMissing(RuntimeError):
    """The emulator package is not importable here."""


def emulator_available() -> bool:
    try:
        import moodle_emulator  # noqa: F401
    except ModuleNotFoundError:
        return False
    return True


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def start_demo_emulator(stack: ExitStack, *, scale: str = "demo") -> Any:
    """Start the emulator with a demo school and point this process and its children at it
    (MOODLE_URL, MOODLE_TOKEN and a faster throttle, unless one was set, in the environment)."""
    try:
        from moodle_emulator import EmulatorServer
    except ModuleNotFoundError:
        raise EmulatorMissing(NOT_INSTALLED) from None
    port = DEMO_EMULATOR_PORT if _port_free("127.0.0.1", DEMO_EMULATOR_PORT) else 0
    emulator = stack.enter_context(EmulatorServer(scale=scale, token=DEMO_TOKEN, host="127.0.0.1", port=port))
    os.environ["MOODLE_URL"] = emulator.url
    os.environ["MOODLE_TOKEN"] = emulator.token
    # The polite default (5 requests/s) is for real sites; the local demo may go faster.
    os.environ.setdefault("MOODLE_RATE_LIMIT_REQUESTS_PER_SECOND", str(DEMO_REQUESTS_PER_SECOND))
    return emulator


def enable_demo_schedule(engine) -> list[SyncTarget]:
    """Turn the schedule on for the demo, once: only targets nobody has configured yet."""
    from schedules.config_table import list_configs, update_config

    enabled = []
    for config in list_configs(engine):
        if config.updated_at is None and not config.enabled:
            update_config(engine, config.target, enabled=True, frequency_minutes=DEMO_FREQUENCIES[config.target])
            enabled.append(config.target)
    return enabled


def run_emulator_command(args: Sequence[str]) -> int:
    """`moodle-integration emulator ...`: the emulator's own command line."""
    try:
        from moodle_emulator.cli import main
    except ModuleNotFoundError:
        print(f"error: {NOT_INSTALLED}", file=sys.stderr, flush=True)
        return 2
    return int(main(list(args)) or 0)
