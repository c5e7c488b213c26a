"""`moodle-integration serve` as a user runs it: UI, GraphQL and daemon up; Ctrl-C stops all."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

CLI = str(Path(sys.executable).with_name("moodle-integration"))
SECRET = "serve-test-secret-77a1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, timeout: float = 90) -> requests.Response:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            return requests.get(url, timeout=5)
        except requests.ConnectionError as exc:
            last = exc
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout} s: {last}")


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


DAEMON_HEALTH = "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy } } } }"


def wait_until_healthy(port: int, timeout: float = 120) -> dict[str, bool]:
    deadline = time.monotonic() + timeout
    while True:
        answer = requests.post(f"http://127.0.0.1:{port}/graphql", json={"query": DAEMON_HEALTH}, timeout=30).json()
        statuses = answer["data"]["instance"]["daemonHealth"]["allDaemonStatuses"]
        health = {s["daemonType"]: bool(s["healthy"]) for s in statuses}
        if (health.get("SENSOR") and health.get("QUEUED_RUN_COORDINATOR")) or time.monotonic() > deadline:
            return health
        time.sleep(2)


def test_serve_answers_then_stops_cleanly_on_ctrl_c(tmp_path):
    port = free_port()
    env = os.environ.copy()
    env["MOODLE_INTEGRATION_DATA_DIR"] = str(tmp_path)
    env["MOODLE_SYNC_CRON_SECRET"] = SECRET
    env.pop("DAGSTER_HOME", None)
    proc = subprocess.Popen([CLI, "serve", "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        info = wait_for(f"http://127.0.0.1:{port}/server_info")
        assert info.status_code == 200
        assert info.json()["dagster_webserver_version"] == "1.13.27"
        gql = requests.post(f"http://127.0.0.1:{port}/graphql", json={"query": "{ __typename }"}, timeout=10)
        assert gql.json() == {"data": {"__typename": "Query"}}
        locations = requests.post(
            f"http://127.0.0.1:{port}/graphql",
            json={"query": "{ repositoriesOrError { ... on RepositoryConnection { nodes { location { name } jobs { name } } } } }"},
            timeout=30,
        ).json()
        nodes = locations["data"]["repositoriesOrError"]["nodes"]
        assert nodes[0]["location"]["name"] == "moodle_integration"
        assert {"sync_all", "sync_enrollments"} <= {j["name"] for j in nodes[0]["jobs"]}
        daemon_children = [p for p in children_of(proc.pid) if "dagster-daemon" in cmdline(p)]
        assert daemon_children, "serve should run dagster-daemon beside the web server"
        # ...and that daemon is alive as far as Dagster is concerned: its sensor daemon beats.
        health = wait_until_healthy(port)
        assert health["SENSOR"] and health["QUEUED_RUN_COORDINATOR"], health
        # Audit lines: who asked for what reaches serve's stderr, without the secret.
        trigger = f"http://127.0.0.1:{port}/api/integration/moodle/sync"
        assert requests.post(trigger, headers={"x-sync-secret": "not-it"}, timeout=30).status_code == 401
        launched = requests.post(trigger, json={"targets": ["COURSE_CATALOG"]}, headers={"x-sync-secret": SECRET},
                                 timeout=60)
        assert launched.status_code == 202 and launched.json()[0]["outcome"] == "LAUNCHED"
        # The app DB was migrated and the persistent DAGSTER_HOME created under the data dir.
        assert (tmp_path / "moodle_integration.sqlite3").exists()
        assert (tmp_path / "dagster_home" / "dagster.yaml").exists()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            output, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, output
    assert "Dagster UI:" in output
    assert "moodle_assets.web: sync trigger from 127.0.0.1 refused: wrong secret" in output
    assert "moodle_assets.web: sync trigger from 127.0.0.1 (force=False): COURSE_CATALOG LAUNCHED" in output
    assert SECRET not in output
    for child in daemon_children:
        assert not Path(f"/proc/{child}").exists() or "zombie" in Path(f"/proc/{child}/status").read_text().lower()
