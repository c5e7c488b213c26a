"""The benchmark entry point still runs end to end (so it cannot silently rot)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quick_benchmark_runs_and_resync_writes_nothing(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(tmp_path), "--timeout", "100"],
        cwd=REPO, capture_output=True, text=True, timeout=110,  # ~25 s alone; slack for a loaded CI box
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "latest.json").read_text())
    assert {"command", "machine", "settings", "scales", "targets"} <= results.keys()
    assert {"cpu", "cores", "ram_gb", "python", "databases"} <= results["machine"].keys()
    block = results["scales"]["demo"]
    assert block["api_minimum"]["requests"] > 0
    runs = {(r["approach"], r.get("rate_limit_rps")): r for r in block["runs"]}
    assert {("project", None), ("limit", None), ("naive", None), ("project", 100.0)} <= runs.keys()
    for run in block["runs"]:
        assert "error" not in run, run.get("error")
        for key in ("requests", "wall_s", "rows_per_s", "peak_rss_mb", "responses_429", "server_time_s"):
            assert key in run["figures"], (run["approach"], key)
    project = runs[("project", None)]["figures"]
    assert project["resync_rows_written"] == 0
    assert project["resync_write_statements_changing_rows"] == 0
    assert project["ratio_to_limit"] > 0 and project["requests"] >= project["requests_min"]
    limited = runs[("project", 100.0)]["figures"]
    assert limited["responses_429"] == 0 and limited["ratio_to_lower_bound"] > 0
    assert runs[("naive", None)]["figures"]["resync_rows_written"] > 0  # the naive script rewrites every row
    markdown = (tmp_path / "latest.md").read_text()
    assert "| scale | DB |" in markdown and "physical limit" in markdown
