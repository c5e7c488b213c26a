"""The production set-up end to end: `moodle-integration serve` (queued coordinator + daemon),
the HTTP trigger, and the run finishing through the daemon's queue.

The other web tests use an immediate coordinator or none at all; this one checks that a
claimed row survives the wait in Dagster's queue (not closed as a ghost) and that the
daemon's per-target concurrency limit lets a several-target `sync_all` run through.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from web_helpers import ADMIN, EMULATOR_TOKEN, SYNC_SECRET, TRIGGER

CLI = str(Path(sys.executable).with_name("moodle-integration"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_trigger_through_serve_and_the_daemon_queue(tmp_path, module_emulator):
    from moodle_assets.store.db import create_app_engine
    from moodle_assets.history import SyncHistory

    port = free_port()
    env = os.environ.copy()
    env.pop("DAGSTER_HOME", None)
    env.update(
        MOODLE_INTEGRATION_DATA_DIR=str(tmp_path),
        DATABASE_URL=f"sqlite:///{tmp_path / 'app.sqlite3'}",
        MOODLE_URL=module_emulator.url,
        MOODLE_TOKEN=EMULATOR_TOKEN,
        MOODLE_SYNC_CRON_SECRET=SYNC_SECRET,
    )
    proc = subprocess.Popen(
        [CLI, "serve", "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if requests.get(base + "/server_info", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "serve did not come up"
            time.sleep(0.5)
        r = requests.post(base + TRIGGER, json={"targets": ["USER_DIRECTORY", "COURSE_CATALOG"]},
                          headers={"x-sync-secret": SYNC_SECRET}, timeout=60)
        assert r.status_code == 202, r.text
        results = r.json()
        assert [x["outcome"] for x in results] == ["LAUNCHED", "LAUNCHED"]
        (run_id,) = {x["dagster_run_id"] for x in results}
        engine = create_app_engine(env["DATABASE_URL"])
        deadline = time.monotonic() + 150
        while True:
            rows = {row.id: row for row in SyncHistory(engine).recent()}
            statuses = [rows[x["sync_run_id"]].status for x in results]
            if all(s != "RUNNING" for s in statuses) or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert statuses == ["SUCCESS", "SUCCESS"], [(rows[x["sync_run_id"]].error) for x in results]
        assert all(rows[x["sync_run_id"]].dagster_run_id == run_id for x in results)
        page = requests.get(base + ADMIN, timeout=30).text
        assert page.count(f'href="/runs/{run_id}"') == 2
        engine.dispose()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            output, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
    assert SYNC_SECRET not in output and EMULATOR_TOKEN not in output
    assert "HTTP trigger: POST" in output
