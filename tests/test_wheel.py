"""The wheel, installed into a clean virtual environment, runs the product from any directory:
`db upgrade`, `sync` and `serve` (instance defaults are package data), and it does not carry the
Moodle emulator (a clear message instead of the demo)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 240  # a cold code server on a loaded 2-core box


def _uv() -> str:
    local = REPO_ROOT / ".venv-tools" / "bin" / "uv"
    found = str(local) if local.exists() else shutil.which("uv")
    if not found:
        pytest.fail("uv is needed to build and install the wheel (./dev bootstraps it into .venv-tools)")
    return found


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the locked runtime dependencies and the freshly built wheel."""
    uv = _uv()
    base = tmp_path_factory.mktemp("wheel")
    dist = base / "dist"
    run = dict(check=True, capture_output=True, text=True, timeout=600)
    subprocess.run([uv, "build", "--wheel", "-q", "-o", str(dist), str(REPO_ROOT)], **run)
    [wheel] = dist.glob("moodle_integration-*.whl")
    requirements = base / "requirements.txt"
    subprocess.run([uv, "export", "--project", str(REPO_ROOT), "--frozen", "--no-dev", "--no-emit-project",
                    "--no-hashes", "-q", "-o", str(requirements)], **run)
    venv = base / "venv"
    subprocess.run([uv, "venv", "-q", str(venv)], **run)
    subprocess.run([uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), "-r", str(requirements),
                    str(wheel)], **run)
    return venv


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOODLE_", "DATABASE_URL", "DAGSTER_HOME"))}
    env.pop("PYTHONPATH", None)
    env.update(extra)
    return env


def test_the_wheel_has_no_emulator_and_no_tests(installed):
    python = installed / "bin" / "python"
    probe = "import importlib.util as u; print([m for m in ('moodle_emulator', 'tests', 'benchmarks') if u.find_spec(m)])"
    out = subprocess.run([str(python), "-c", probe], cwd="/", capture_output=True, text=True, timeout=60, env=_env())
    assert out.stdout.strip() == "[]", out.stderr


def test_db_upgrade_and_sync_from_another_directory(installed, tmp_path, emulator):
    cli = str(installed / "bin" / "moodle-integration")
    env = _env(MOODLE_URL=emulator.url, MOODLE_TOKEN=emulator.token, MOODLE_RATE_LIMIT_REQUESTS_PER_SECOND="0")
    up = subprocess.run([cli, "db", "upgrade"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stderr
    assert (tmp_path / "data" / "moodle_integration.sqlite3").exists()  # ./data where the user ran it
    sync = subprocess.run([cli, "sync", "--target", "COURSE_CATALOG"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert sync.returncode == 0, sync.stdout + sync.stderr
    assert "COURSE_CATALOG   SUCCESS" in sync.stdout
    assert (tmp_path / "data" / "dagster_home" / "dagster.yaml").exists()


def test_serve_from_another_directory_answers(installed, tmp_path, emulator, free_port):
    cli = str(installed / "bin" / "moodle-integration")
    env = _env(MOODLE_URL=emulator.url, MOODLE_TOKEN=emulator.token)
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([cli, "serve", "--port", str(free_port)], cwd=tmp_path, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{free_port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                if requests.get(base + "/server_info", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(1)
        assert requests.get(base + "/server_info", timeout=10).json()["dagster_version"] == "1.13.27"
        page = requests.get(base + "/dashboard/admin/integration", timeout=60)
        assert page.status_code == 200 and "Course catalog" in page.text
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        log.close()
    assert code == 0, (tmp_path / "serve.log").read_text()[-3000:]


def test_serve_without_moodle_url_explains_the_demo_is_not_installed(installed, tmp_path):
    cli = str(installed / "bin" / "moodle-integration")
    out = subprocess.run([cli, "serve"], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "emulator is not part of this installation" in out.stderr and "MOODLE_URL" in out.stderr
    out = subprocess.run([cli, "emulator"], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "python -m moodle_emulator" in out.stdout + out.stderr
