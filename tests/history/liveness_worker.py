"""A stand-in sync worker in its own process, for the liveness and ownership tests.

    python tests/history/liveness_worker.py hold URL TARGET
        claim TARGET as the `sync` command does (liveness lock from the claim on), take the
        row, print {"run_id", "token", "pid"} as one JSON line, then beat its heartbeat
        every second until killed.
    python tests/history/liveness_worker.py adopt URL TARGET ID,ID,...   (TARGET unused)
        as a run worker of a multi-target Dagster run: answer for the claimed rows (`hold`),
        take the first, print {"adopted", "token", "pid"}, beat until killed.
    python tests/history/liveness_worker.py race URL TARGET START_AT
        wait until the wall clock reaches START_AT, claim and take, print
        {"started", "run_id", "owner", "closed_ghosts", "pid"}; the owner holds the row until
        its stdin is closed, then finishes it SUCCESS.
"""
from __future__ import annotations

import json
import os
import sys
import time

from moodle_assets.core.targets import SyncStatus, SyncTarget, SyncTrigger
from moodle_assets.history import SyncHistory
from moodle_assets.store.db import create_app_engine


def main(argv: list[str]) -> int:
    mode, url, target_name = argv[:3]
    target = SyncTarget.parse(target_name)
    history = SyncHistory(create_app_engine(url), heartbeat_timeout=30)
    if mode == "hold":
        claim = history.claim(target, SyncTrigger.CLI, dagster_run_id=f"fake-{os.getpid()}", hold=True)
        owner = history.take(claim.run_id, f"fake-{os.getpid()}") if claim.started else None
        print(json.dumps({"run_id": claim.run_id, "started": claim.started, "token": owner.token if owner else None,
                          "pid": os.getpid()}), flush=True)
        while owner is not None:
            time.sleep(1)
            if not history.heartbeat(owner):
                return 0  # closed under it: a real worker stops here
        return 0
    if mode == "race":
        start_at = float(argv[3])
        time.sleep(max(0.0, start_at - time.time()))
        claim = history.claim(target, SyncTrigger.API, hold=True)
        owner = history.take(claim.run_id, f"fake-{os.getpid()}") if claim.started else None
        print(json.dumps({"started": claim.started, "run_id": claim.run_id, "owner": owner is not None,
                          "closed_ghosts": list(claim.closed_ghosts), "pid": os.getpid()}), flush=True)
        if owner is not None:
            sys.stdin.read()  # hold the row until the test has every racer's answer (stdin closed)
            assert history.finish(owner, SyncStatus.SUCCESS)
        return 0
    if mode == "adopt":
        # A run worker of a multi-target run: answers for every claimed row, takes the first.
        run_ids = [int(x) for x in argv[3].split(",")]
        adopted = history.hold(run_ids)
        owner = history.take(run_ids[0], "fake-run")
        print(json.dumps({"adopted": adopted, "token": owner.token if owner else None, "pid": os.getpid()}),
              flush=True)
        while True:
            time.sleep(1)
            if owner is not None and not history.heartbeat(owner):
                return 0
    raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
