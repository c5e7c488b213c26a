"""`./dev deploy-test`: the Docker deployment built and run for real, end to end.

What it does, in order (each step bounded in time; everything it starts is torn down at the end,
the images stay as the cache of the next run):

 1. writes the deployment's environment file with fresh random secrets (Moodle token, sync
    secret, web token, signing key, DB password) as `deploy/.env.deploy-test`, *before* the
    build, as an operator's `deploy/.env` would be: the build must not pick it up;
 2. builds the images with `deploy/docker/build.sh` (local Debian base from debootstrap, skipped
    when it exists; the app image; the PostgreSQL image; Docker's layer cache);
 3. starts the Moodle emulator on the host (EMULATOR_CMD) and the compose stack
    (`deploy/docker-compose.yaml`: PostgreSQL, code server, daemon, web; host networking);
 4. proves, against the emulator:
    - a sync through the HTTP trigger and one through GraphQL `launchRun` end SUCCESS, each in its
      own run container of the project image (found by the labels DockerRunLauncher sets);
    - the rows in PostgreSQL match what the emulator serves;
    - two targets syncing at once, in two run containers, under a proxy limit of RPS requests/s:
      zero 429s (the throttle volume is shared and owned by the app user);
    - the daemon container killed mid-sync (`docker kill`) and started again: the run in flight
      ends SUCCESS, a run queued meanwhile runs, the next sync succeeds, rows still match;
    - no secret in `docker history`, in any layer of the images (`docker save`), in the logs
      of any container (services and run containers), or in either database (`pg_dump`: the
      Dagster event log the UI shows, run tags and config, the sync history);
 5. prints one summary line.

Run it as root (debootstrap) on a Debian/Ubuntu machine with a Docker engine, docker-compose and
debootstrap; `.ci/run` installs them. Settings (environment): DEPLOY_TEST_PG_PORT (55440),
DEPLOY_TEST_CODE_SERVER_PORT (4270), DEPLOY_TEST_WEB_PORT (3010), DEPLOY_TEST_EMULATOR_PORT
(8190), DEPLOY_TEST_SCALE (S), DEPLOY_TEST_KEEP_LOGS=1 (keep the log directory on success).
Do not run it on a Docker host that runs the real deployment: it uses the same throttle
volume name (moodle_integration_throttle) and removes it at the end.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import requests

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"

# The Moodle emulator, run on the host from the repo's venv. When it moves out of the product
# package this is the one line to change.
EMULATOR_CMD = [sys.executable, "-m", "moodle_emulator"]

APP_IMAGE = os.environ.get("APP_IMAGE", "moodle-integration:0.1.0")
PG_IMAGE = os.environ.get("PG_IMAGE", "moodle-integration-postgres:15")
PG_PORT = int(os.environ.get("DEPLOY_TEST_PG_PORT", "55440"))
CODE_SERVER_PORT = int(os.environ.get("DEPLOY_TEST_CODE_SERVER_PORT", "4270"))
WEB_PORT = int(os.environ.get("DEPLOY_TEST_WEB_PORT", "3010"))
EMULATOR_PORT = int(os.environ.get("DEPLOY_TEST_EMULATOR_PORT", "8190"))
SCALE = os.environ.get("DEPLOY_TEST_SCALE", "S")
PROJECT = "moodle_deploytest"            # compose project: containers moodle_deploytest_*_1
ENV_FILE = DEPLOY / ".env.deploy-test"   # git- and docker-ignored, like deploy/.env
THROTTLE_VOLUME = "moodle_integration_throttle"
RPS = 5                                  # the client's default budget, and the proxy's limit
PROXY_BURST = 3                          # as tests/production/test_rate_budget.py (2 loaded cores)
USER_BATCH = 25                          # users per by-id request: ~40 requests at scale S, so
                                         # the user sync overlaps the enrolment sync for seconds
TARGETS = ["COURSE_CATALOG", "USER_DIRECTORY", "ENROLLMENTS"]
LOCATION = "moodle_integration"
TRIGGER = "/api/integration/moodle/sync"
RUN_TIMEOUT = 240


class Failed(Exception):
    pass


T0 = time.monotonic()


def log(msg: str) -> None:
    elapsed = time.monotonic() - T0
    print(f"==> [{int(elapsed // 60)}:{int(elapsed % 60):02d}] {msg}", flush=True)


def check(condition: Any, message: str) -> None:
    if not condition:
        raise Failed(message)


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # retried until the deadline
            last = exc
        if time.monotonic() > deadline:
            raise Failed(f"timed out after {timeout:.0f} s waiting for {what}" + (f" (last error: {last!r})" if last else ""))
        time.sleep(interval)


def run(argv: list[str], *, timeout: float = 120, check_rc: bool = True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check_rc and proc.returncode != 0:
        raise Failed(f"{' '.join(argv[:4])}… exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-1500:]}")
    return proc


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def fmt_duration(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


# --- the run containers DockerRunLauncher starts -----------------------------------------------


@dataclass
class RunContainer:
    run_id: str
    id: str
    name: str
    image: str
    image_id: str
    job: str
    network_mode: str
    user: str
    mounts: list[str]
    log: Path


class RunContainerWatcher:
    """Follows `docker events` for containers labelled dagster/run_id (the label DockerRunLauncher
    puts on every run container): inspects each as it starts and copies its log to a file
    (the containers remove themselves when the run ends: auto_remove)."""

    def __init__(self, logdir: Path):
        self.logdir = logdir
        self.containers: dict[str, RunContainer] = {}
        self._lock = threading.Lock()
        self._followers: list[subprocess.Popen] = []
        self._events = subprocess.Popen(
            ["docker", "events", "--filter", "type=container", "--filter", "event=start",
             "--filter", "label=dagster/run_id", "--format", "{{json .}}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        assert self._events.stdout is not None
        for line in self._events.stdout:
            try:
                cid = json.loads(line)["id"]
                self._add(cid)
            except Exception as exc:  # a container gone before inspect: reported by the checks
                print(f"    (run container watcher: {exc!r})", flush=True)

    def _add(self, cid: str) -> None:
        log = self.logdir / f"run-{cid[:12]}.log"
        out = log.open("wb")
        self._followers.append(subprocess.Popen(["docker", "logs", "-f", cid], stdout=out, stderr=subprocess.STDOUT))
        info = json.loads(run(["docker", "inspect", cid]).stdout)[0]
        labels = info["Config"]["Labels"] or {}
        container = RunContainer(
            run_id=labels["dagster/run_id"], id=cid, name=info["Name"].lstrip("/"), image=info["Config"]["Image"],
            image_id=info["Image"], job=labels.get("dagster/job_name", ""), network_mode=info["HostConfig"]["NetworkMode"],
            user=info["Config"]["User"], mounts=[f"{m.get('Name') or m['Source']}:{m['Destination']}" for m in info["Mounts"]],
            log=log)
        with self._lock:
            self.containers[container.run_id] = container

    def for_run(self, run_id: str, timeout: float = 30) -> RunContainer:
        return wait_until(lambda: self.containers.get(run_id), timeout, f"the run container of run {run_id}", 0.2)

    def stop(self) -> None:
        self._events.terminate()
        for p in self._followers:
            if p.poll() is None:
                p.terminate()
        for p in [self._events, *self._followers]:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


# --- the deployment under test ------------------------------------------------------------------


@dataclass
class Deployment:
    logdir: Path
    secrets: dict[str, str]
    compose: list[str]
    emulator: subprocess.Popen | None = None
    watcher: RunContainerWatcher | None = None
    started_stack: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def web(self) -> str:
        return f"http://127.0.0.1:{WEB_PORT}"

    @property
    def emulator_url(self) -> str:
        return f"http://127.0.0.1:{EMULATOR_PORT}"

    # -- compose and containers --
    def dc(self, *args: str, timeout: float = 300, check_rc: bool = True) -> subprocess.CompletedProcess:
        return run([*self.compose, "-p", PROJECT, "--env-file", str(ENV_FILE), "-f", str(DEPLOY / "docker-compose.yaml"), *args],
                   timeout=timeout, check_rc=check_rc)

    def service_container(self, service: str) -> str:
        cid = self.dc("ps", "-q", service).stdout.strip()
        check(cid, f"no container for service {service}")
        return cid

    def container_state(self, cid: str) -> str:
        return run(["docker", "inspect", "-f", "{{.State.Status}}", cid]).stdout.strip()

    # -- HTTP --
    def trigger(self, targets: list[str], force: bool = False) -> list[dict]:
        r = requests.post(self.web + TRIGGER, json={"targets": targets, "force": force}, timeout=60,
                          headers={"Authorization": f"Bearer {self.secrets['MOODLE_SYNC_CRON_SECRET']}"})
        check(r.status_code == 202, f"trigger {targets}: HTTP {r.status_code} {r.text[:300]}")
        outcomes = r.json()
        check(all(o["outcome"] == "LAUNCHED" for o in outcomes), f"trigger {targets}: {outcomes}")
        return outcomes

    def trigger_run(self, targets: list[str], force: bool = False) -> str:
        (run_id,) = {o["dagster_run_id"] for o in self.trigger(targets, force)}
        return run_id

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        r = requests.post(self.web + "/graphql", json={"query": query, "variables": variables or {}}, timeout=60,
                          headers={"Authorization": f"Bearer {self.secrets['MOODLE_INTEGRATION_WEB_TOKEN']}"})
        r.raise_for_status()
        body = r.json()
        check("errors" not in body, f"GraphQL errors: {body.get('errors')}")
        return body["data"]

    def launch_graphql(self, job: str, target: str) -> str:
        data = self.graphql(
            "mutation Launch($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename "
            "... on LaunchRunSuccess { run { runId } } ... on PythonError { message } "
            "... on PipelineNotFoundError { message } ... on RunConfigValidationInvalid { errors { message } } } }",
            {"p": {"selector": {"repositoryLocationName": LOCATION, "repositoryName": "__repository__", "jobName": job},
                   "runConfigData": {},
                   "executionMetadata": {"tags": [{"key": "moodle/target", "value": target},
                                                  {"key": "moodle/trigger", "value": "GRAPHQL"}]}}})
        launch = data["launchRun"]
        check(launch["__typename"] == "LaunchRunSuccess", f"launchRun {job}: {launch}")
        return launch["run"]["runId"]

    def run_info(self, run_id: str) -> dict:
        return self.graphql("query R($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status jobName "
                            "startTime endTime tags { key value } } } }", {"id": run_id})["runOrError"]

    def wait_run(self, run_id: str, timeout: float = RUN_TIMEOUT) -> dict:
        def ended():
            info = self.run_info(run_id)
            return info if info.get("status") in ("SUCCESS", "FAILURE", "CANCELED") else None

        info = wait_until(ended, timeout, f"run {run_id} to end", 1.0)
        check(info["status"] == "SUCCESS", f"run {run_id} ({info.get('jobName')}) ended {info['status']}")
        return info

    def daemons_healthy(self) -> bool:
        data = self.graphql("{ instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } } }")
        statuses = data["instance"]["daemonHealth"]["allDaemonStatuses"]
        return bool(statuses) and all(s["healthy"] for s in statuses if s["required"])

    # -- the emulator --
    def emu(self, path: str, payload: dict | None = None) -> dict:
        if payload is None:
            r = requests.get(self.emulator_url + path, timeout=10)
        else:
            r = requests.post(self.emulator_url + path, json=payload, timeout=10)
        r.raise_for_status()
        return r.json()

    # -- the app database --
    def db_counts(self) -> dict[str, int]:
        conn = psycopg2.connect(host="127.0.0.1", port=PG_PORT, user="dagster", dbname="moodle",
                                password=self.secrets["POSTGRES_PASSWORD"], connect_timeout=10)
        try:
            with conn.cursor() as cur:
                out = {}
                for table in ("course_catalog", "users", "user_course_enrollment"):
                    cur.execute(f"SELECT count(*) FROM {table}")  # noqa: S608 - fixed names
                    out[table] = cur.fetchone()[0]
                cur.execute("SELECT status, count(*) FROM integration_sync_run GROUP BY status")
                out["sync_runs"] = dict(cur.fetchall())
                return out
        finally:
            conn.close()

    def rows_match(self) -> tuple[int, int, int]:
        summary = self.emu("/__emulator__/dataset")
        counts = self.db_counts()
        expected = {"course_catalog": summary["courses"], "users": summary["users"] - 1,  # not the guest account
                    "user_course_enrollment": summary["enrolments"]}
        got = {k: counts[k] for k in expected}
        check(got == expected, f"rows in PostgreSQL {got} != what the emulator serves {expected}")
        check(set(counts["sync_runs"]) <= {"SUCCESS", "SKIPPED"}, f"sync history rows by status: {counts['sync_runs']}")
        return expected["course_catalog"], expected["users"], expected["user_course_enrollment"]


def compose_command() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    raise Failed("neither docker-compose nor `docker compose` is installed")


def write_env_file(values: dict[str, str]) -> None:
    ENV_FILE.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    ENV_FILE.chmod(0o600)


def preflight() -> None:
    check(run(["docker", "info", "--format", "{{.ServerVersion}}"], check_rc=False).returncode == 0,
          "no Docker engine answers (start dockerd)")
    for name, port in (("DEPLOY_TEST_PG_PORT", PG_PORT), ("DEPLOY_TEST_CODE_SERVER_PORT", CODE_SERVER_PORT),
                       ("DEPLOY_TEST_WEB_PORT", WEB_PORT), ("DEPLOY_TEST_EMULATOR_PORT", EMULATOR_PORT)):
        check(port_free(port), f"port {port} is in use on 127.0.0.1: set {name} to a free one")
    leftovers = run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}"]).stdout.split()
    check(not leftovers, f"containers of a previous deploy-test are still there: docker-compose -p {PROJECT} down -v")


# --- the steps ---------------------------------------------------------------------------------


def build(d: Deployment) -> str:
    t0 = time.monotonic()
    log("building the images (deploy/docker/build.sh; output in build.log)")
    with (d.logdir / "build.log").open("wb") as out:
        rc = subprocess.run([str(DEPLOY / "docker" / "build.sh")], stdout=out, stderr=subprocess.STDOUT,
                            env={**os.environ, "APP_IMAGE": APP_IMAGE, "PG_IMAGE": PG_IMAGE}, timeout=1500).returncode
    tail = (d.logdir / "build.log").read_text(errors="replace")
    check(rc == 0, f"deploy/docker/build.sh exited {rc}:\n{tail[-3000:]}")
    cached = tail.count("Using cache")
    took = time.monotonic() - t0
    log(f"images built in {took:.0f} s ({cached} cached steps)")
    return f"build {took:.0f}s"


def start(d: Deployment) -> None:
    log(f"starting the Moodle emulator (scale {SCALE}) on 127.0.0.1:{EMULATOR_PORT}")
    with (d.logdir / "emulator.log").open("wb") as out:
        d.emulator = subprocess.Popen(
            [*EMULATOR_CMD, "--host", "127.0.0.1", "--port", str(EMULATOR_PORT), "--scale", SCALE,
             "--token", d.secrets["MOODLE_TOKEN"]],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    wait_until(lambda: d.emu("/__emulator__/health").get("ok"), 60, "the emulator")

    log(f"docker-compose up (project {PROJECT}): postgres :{PG_PORT}, code server :{CODE_SERVER_PORT}, web :{WEB_PORT}")
    t0 = time.monotonic()
    d.started_stack = True
    d.watcher = RunContainerWatcher(d.logdir)
    d.dc("up", "-d", timeout=600)
    wait_until(lambda: requests.get(d.web + "/server_info", timeout=5, headers={
        "Authorization": f"Bearer {d.secrets['MOODLE_INTEGRATION_WEB_TOKEN']}"}).status_code == 200, 180, "the web process")
    wait_until(d.daemons_healthy, 120, "the daemon's heartbeats", 1.0)
    log(f"stack up in {time.monotonic() - t0:.0f} s")


def check_run_container(d: Deployment, run_id: str, info: dict) -> RunContainer:
    c = d.watcher.for_run(run_id)
    app_image_id = run(["docker", "image", "inspect", "-f", "{{.Id}}", APP_IMAGE]).stdout.strip()
    tags = {t["key"]: t["value"] for t in info["tags"]}
    check(c.image == APP_IMAGE and c.image_id == app_image_id,
          f"run {run_id} ran in {c.image} ({c.image_id[:19]}), not the project image {APP_IMAGE} ({app_image_id[:19]})")
    check(tags.get("docker/container_id") == c.id, f"run {run_id}: tag docker/container_id {tags.get('docker/container_id')} != {c.id}")
    check(c.network_mode == "host" and c.user == "10001", f"run container {c.name}: network {c.network_mode}, user {c.user!r}")
    check(f"{THROTTLE_VOLUME}:/var/lib/moodle-throttle" in c.mounts, f"run container {c.name} mounts {c.mounts}")
    return c


def step_trigger(d: Deployment) -> tuple[str, RunContainer]:
    log("sync through the HTTP trigger (all three targets: one sync_all run)")
    run_id = d.trigger_run(TARGETS)
    info = d.wait_run(run_id)
    c = check_run_container(d, run_id, info)
    log(f"trigger run {run_id}: SUCCESS in container {c.name} ({c.id[:12]}, {c.image}, job {c.job})")
    return run_id, c


def step_rows(d: Deployment) -> str:
    courses, users, enrollments = d.rows_match()
    log(f"rows match: {courses} courses, {users} users, {enrollments} enrollments")
    return f"rows match ({courses} courses, {users} users, {enrollments} enrollments)"


def step_graphql(d: Deployment) -> tuple[str, RunContainer]:
    log("sync through GraphQL launchRun (sync_user_directory)")
    run_id = d.launch_graphql("sync_user_directory", "USER_DIRECTORY")
    info = d.wait_run(run_id)
    c = check_run_container(d, run_id, info)
    log(f"graphql run {run_id}: SUCCESS in container {c.name} ({c.id[:12]})")
    return run_id, c


def step_rate_budget(d: Deployment) -> str:
    log(f"two targets at once in two run containers, proxy limit {RPS} rps (burst {PROXY_BURST})")
    d.emu("/__emulator__/faults", {"rate_limit": {"rps": RPS, "burst": PROXY_BURST}})
    d.emu("/__emulator__/counters/reset", {})
    try:
        users = d.trigger_run(["USER_DIRECTORY"], force=True)
        enrol = d.trigger_run(["ENROLLMENTS"], force=True)
        infos = {run_id: d.wait_run(run_id) for run_id in (users, enrol)}
        seen = d.emu("/__emulator__/counters")
    finally:
        d.emu("/__emulator__/faults", {})
    a, b = (check_run_container(d, r, infos[r]) for r in (users, enrol))
    check(a.id != b.id, "both runs in one container")
    (ua, ub), (ea, eb) = ((infos[r]["startTime"], infos[r]["endTime"]) for r in (users, enrol))
    check(ua < eb and ea < ub, f"the two runs did not overlap: users {ua}-{ub}, enrollments {ea}-{eb}")
    overlap = min(ub, eb) - max(ua, ea)
    n429 = seen["responses_429"]
    check(seen["responses_429"] == 0 and "429" not in seen["by_status"], f"429s under the shared budget: {seen['by_status']}")
    check(seen["requests_total"] >= 100, f"only {seen['requests_total']} requests: the test did not load the proxy")
    for c in (a, b):
        text = c.log.read_text(errors="replace")
        check("moodle throttle: cannot use" not in text, f"{c.name} fell back to a per-process throttle:\n{text[-1500:]}")
    owner = run(["docker", "run", "--rm", "--network", "none", "-v", f"{THROTTLE_VOLUME}:/t", "--entrypoint", "stat",
                 APP_IMAGE, "-c", "%u", "/t"]).stdout.strip()
    check(owner == "10001", f"throttle volume owned by uid {owner}, not 10001")
    log(f"{seen['requests_total']} requests from containers {a.name} and {b.name} "
        f"(overlapping {overlap:.0f} s): {n429} x 429")
    return f"2 targets under {RPS} rps: {n429}×429 ({seen['requests_total']} requests, {overlap:.0f}s overlap)"


def step_daemon_kill(d: Deployment) -> str:
    log("daemon killed mid-sync and started again")
    daemon = d.service_container("daemon")
    before = d.emu("/__emulator__/counters")["by_function"].get("core_enrol_get_enrolled_users", 0)
    in_flight = d.trigger_run(["ENROLLMENTS"], force=True)
    container = d.watcher.for_run(in_flight, timeout=90)
    wait_until(lambda: d.emu("/__emulator__/counters")["by_function"].get("core_enrol_get_enrolled_users", 0) > before + 5,
               90, "the enrolment sync to be under way")
    run(["docker", "kill", daemon])
    check(d.container_state(daemon) != "running", "the daemon is still running after docker kill")
    queued = d.trigger_run(["COURSE_CATALOG"])   # accepted by the web process while the daemon is down
    time.sleep(3)
    check(d.run_info(queued)["status"] == "QUEUED", f"run {queued} left the queue without a daemon")
    check(d.run_info(in_flight)["status"] == "STARTED", f"in-flight run: {d.run_info(in_flight)['status']}")
    log("daemon killed with a run in flight and one queued; starting it again")
    run(["docker", "start", daemon])
    d.wait_run(in_flight)
    log("the in-flight run ended SUCCESS")
    d.wait_run(queued)
    wait_until(d.daemons_healthy, 120, "the daemon's heartbeats after the restart", 1.0)
    log("the queued run ended SUCCESS, the daemon is healthy")
    after = d.trigger_run(["COURSE_CATALOG"])   # the restarted daemon launches new runs
    d.wait_run(after)
    d.rows_match()
    log(f"in-flight run {in_flight} (container {container.name}) and queued run {queued} ended SUCCESS; "
        f"next sync {after} SUCCESS; rows match")
    return "daemon kill/restart ✓"


def secret_patterns(d: Deployment) -> dict[str, bytes]:
    patterns = {k: v.encode() for k, v in d.secrets.items()}
    # The build host's extra CA certificates (a proxy's), used by the build stage only: a line of
    # each certificate that Debian's own CA store does not have must be in no shipped layer.
    host_bundle = Path(os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"))
    mozilla = Path("/usr/share/ca-certificates/mozilla")
    if host_bundle.is_file() and mozilla.is_dir():
        known = "".join(p.read_text(errors="replace") for p in mozilla.glob("*.crt"))
        for i, block in enumerate(host_bundle.read_text(errors="replace").split("-----END CERTIFICATE-----")):
            lines = [ln for ln in block.splitlines() if ln and not ln.startswith("-----")]
            if len(lines) > 3 and lines[2] not in known:
                patterns[f"build-host CA certificate #{i}"] = lines[2].encode()
    return patterns


MARKER = "(expected content)"


def scan_stream(argv: list[str], patterns: dict[str, bytes]) -> set[str]:
    """Names of the patterns found in the output of argv (streamed; matches across chunk edges count)."""
    found: set[str] = set()
    keep = max(len(p) for p in patterns.values())
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    tail = b""
    while chunk := proc.stdout.read(4 << 20):
        window = tail + chunk
        found.update(name for name, p in patterns.items() if p in window)
        tail = window[-keep:]
    check(proc.wait() == 0, f"{' '.join(argv)} failed")
    return found


def step_secrets(d: Deployment) -> str:
    log("secrets: docker history, every image layer (docker save), every container log")
    patterns = secret_patterns(d)
    extra = len(patterns) - len(d.secrets)
    hits: list[str] = []
    for image in (APP_IMAGE, PG_IMAGE):
        history = run(["docker", "history", "--no-trunc", "--format", "{{.CreatedBy}}", image]).stdout.encode()
        hits += [f"{name} in docker history of {image}" for name, p in patterns.items() if p in history]
    # Each search also looks for something that must be there, so an empty stream cannot pass.
    found = scan_stream(["docker", "save", APP_IMAGE, PG_IMAGE], {**patterns, MARKER: b"moodle_integration-"})
    check(MARKER in found, "docker save produced no image content")
    hits += [f"{name} in a layer of {APP_IMAGE} or {PG_IMAGE}" for name in sorted(found - {MARKER})]
    logs = {}
    for service in ("postgres", "code-server", "daemon", "web"):
        cid = d.service_container(service)
        proc = run(["docker", "logs", cid], timeout=60)
        logs[service] = (proc.stdout + proc.stderr).encode()
        (d.logdir / f"{service}.log").write_bytes(logs[service])
    for c in d.watcher.containers.values():
        logs[f"run container {c.name}"] = c.log.read_bytes()
    for where, text in logs.items():
        hits += [f"{name} in the log of {where}" for name, p in patterns.items() if name in d.secrets and p in text]
    # What the runs log goes to Dagster's event log (the UI), not to stdout: a run container's own
    # log is nearly empty. So both databases are dumped and searched too: event log, run tags and
    # config, ticks, sync history.
    secrets_only = {k: v for k, v in patterns.items() if k in d.secrets}
    postgres = d.service_container("postgres")
    for db, marker in (("dagster", b"ASSET_MATERIALIZATION"), ("moodle", b"integration_sync_run")):
        found = scan_stream(["docker", "exec", postgres, "pg_dump", "-h", "/run/postgresql", "-U", "dagster", db],
                            {**secrets_only, MARKER: marker})
        check(MARKER in found, f"pg_dump of {db} has no {marker.decode()}")
        hits += [f"{name} in the {db} database" for name in sorted(found - {MARKER})]
    check(not hits, "secrets found: " + "; ".join(hits))
    log(f"{len(d.secrets)} secrets{f' and {extra} build-host CA certificate(s)' if extra else ''}: "
        f"0 in history, layers, {len(logs)} container logs and both databases")
    return f"secrets in layers/logs/DBs: {len(hits)}"


def teardown(d: Deployment) -> None:
    log("tearing down (containers, volumes, emulator; the images stay)")
    if d.watcher is not None:
        d.watcher.stop()
    if d.started_stack:
        proc = d.dc("down", "-v", "--remove-orphans", "-t", "20", timeout=300, check_rc=False)
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)
        # Run containers remove themselves; one still running (a failed test) is stopped here.
        if d.watcher is not None:
            for c in d.watcher.containers.values():
                subprocess.run(["docker", "rm", "-f", c.id], capture_output=True)
        subprocess.run(["docker", "volume", "rm", THROTTLE_VOLUME], capture_output=True)
    if d.emulator is not None and d.emulator.poll() is None:
        os.killpg(d.emulator.pid, signal.SIGTERM)
        try:
            d.emulator.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(d.emulator.pid, signal.SIGKILL)
    ENV_FILE.unlink(missing_ok=True)


def main() -> int:
    t0 = T0
    logdir = Path(tempfile.mkdtemp(prefix="moodle-deploy-test-"))
    values = {
        "MOODLE_TOKEN": "tok" + secrets.token_hex(16),
        "POSTGRES_PASSWORD": "pg" + secrets.token_hex(16),
        "MOODLE_SYNC_CRON_SECRET": "cron" + secrets.token_hex(16),
        "MOODLE_INTEGRATION_WEB_TOKEN": "web" + secrets.token_hex(16),
        "MOODLE_INTEGRATION_WEB_SIGNING_KEY": "sig" + secrets.token_hex(16),
    }
    d = Deployment(logdir=logdir, secrets=values, compose=[])
    parts: list[str] = []
    ok = False
    try:
        preflight()
        d.compose = compose_command()
        write_env_file({
            "MOODLE_URL": d.emulator_url, **values,
            "DOCKER_GID": str(os.stat("/var/run/docker.sock").st_gid),
            "PG_PORT": str(PG_PORT), "MOODLE_CODE_SERVER_PORT": str(CODE_SERVER_PORT), "MOODLE_WEB_PORT": str(WEB_PORT),
            "MOODLE_INTEGRATION_IMAGE": APP_IMAGE, "MOODLE_POSTGRES_IMAGE": PG_IMAGE,
            "MOODLE_RATE_LIMIT_REQUESTS_PER_SECOND": str(RPS), "MOODLE_SYNC_USER_BATCH_SIZE": str(USER_BATCH),
        })
        build_note = build(d)
        start(d)
        _, trig = step_trigger(d)
        rows = step_rows(d)
        _, gql = step_graphql(d)
        parts += [f"trigger run ✓ (container {trig.name} {trig.id[:12]})", f"graphql run ✓ (container {gql.name} {gql.id[:12]})", rows]
        parts.append(step_rate_budget(d))
        parts.append(step_daemon_kill(d))
        parts.append(step_secrets(d))
        parts.append(f"{len(d.watcher.containers)} run containers of {APP_IMAGE}, {build_note}")
        ok = True
    except Failed as exc:
        parts.append(f"FAILED: {exc}")
    except BaseException as exc:  # noqa: BLE001 - report, tear down, re-raise nothing
        parts.append(f"FAILED: {type(exc).__name__}: {exc}")
    finally:
        if not ok and d.started_stack:
            for service in ("code-server", "daemon", "web"):
                try:
                    proc = d.dc("logs", "--no-color", "--tail", "40", service, timeout=60, check_rc=False)
                    (logdir / f"{service}.tail.log").write_text(proc.stdout)
                    print(f"---- {service} (last lines) ----\n{proc.stdout[-2500:]}", file=sys.stderr)
                except Exception:
                    pass
        try:
            teardown(d)
        except Exception as exc:  # noqa: BLE001
            parts.append(f"teardown failed: {exc!r}")
            ok = False
    if d.watcher is not None and d.watcher.containers:
        print("run containers seen:")
        for c in d.watcher.containers.values():
            print(f"  {c.name} {c.id[:12]} image={c.image} job={c.job} run={c.run_id} network={c.network_mode} user={c.user}")
    if ok and not os.environ.get("DEPLOY_TEST_KEEP_LOGS"):
        shutil.rmtree(logdir, ignore_errors=True)
    else:
        print(f"logs: {logdir}")
    print(f"deploy-test: {'PASS' if ok else 'FAIL'} in {fmt_duration(time.monotonic() - t0)} — " + ", ".join(parts), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
