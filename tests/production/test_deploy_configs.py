"""The deployment files agree with the code and with Dagster 1.13.27's instance schema (what can
be checked without a Docker engine or a Kubernetes cluster; see deploy/README.md)."""
from __future__ import annotations

import shutil

import yaml

from production_stack import DEPLOY, REPO_ROOT


def test_instance_configs_validate_against_the_pinned_dagster_schema(tmp_path, monkeypatch):
    from dagster._core.instance.config import dagster_instance_config

    monkeypatch.setenv("DAGSTER_PG_URL", "postgresql+psycopg2://u:p@db.internal/dagster")
    for name, launcher in (("dagster.postgres.yaml", None), ("dagster.docker.yaml", "DockerRunLauncher")):
        home = tmp_path / name
        home.mkdir()
        shutil.copy(DEPLOY / name, home / "dagster.yaml")
        config, _ = dagster_instance_config(str(home))
        assert "postgres" in config["storage"]
        assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
        if launcher:
            assert config["run_launcher"]["class"] == launcher


def test_docker_and_helm_files_name_the_contract_location():
    from moodle_assets.targets import CODE_LOCATION_NAME

    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    assert values["dagsterWebserver"]["workspace"]["servers"][0]["name"] == CODE_LOCATION_NAME
    workspace = yaml.safe_load((DEPLOY / "workspace.grpc.yaml").read_text())
    assert workspace["load_from"][0]["grpc_server"]["location_name"] == CODE_LOCATION_NAME
    compose = yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())
    assert f"--location-name {CODE_LOCATION_NAME} " in " ".join(compose["services"]["code-server"]["command"])
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert f'"--location-name", "{CODE_LOCATION_NAME}"' in dockerfile


def _sync_settings_read_by_the_code() -> set[str]:
    """Every MOODLE_* variable named in the shipped packages (the wheel's, per pyproject.toml)."""
    import re
    import tomllib

    packages = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    names: set[str] = set()
    for package in packages:
        for path in (REPO_ROOT / package).rglob("*.py"):
            names.update(re.findall(r"[\"'](MOODLE_[A-Z0-9_]+)[\"']", path.read_text()))
    return names


# Read by the web process, the code server or the CLI only, never by a sync in a run container.
NOT_FOR_RUNS = {
    "MOODLE_SYNC_CRON_SECRET", "MOODLE_INTEGRATION_WEB_TOKEN", "MOODLE_INTEGRATION_WEB_SIGNING_KEY",
    "MOODLE_INTEGRATION_DATA_DIR", "MOODLE_SCHEDULE_SENSOR_INTERVAL_SECONDS",
}


def test_compose_sets_every_variable_the_docker_run_launcher_forwards():
    """Dagster refuses to launch a run when a forwarded variable is unset in the daemon (it did,
    for every run, before the daemon set them); and a sync setting that is not forwarded would
    silently take its default in the run containers."""
    compose = yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())
    launcher = yaml.safe_load((DEPLOY / "dagster.docker.yaml").read_text())["run_launcher"]["config"]
    forwarded = [v.split("=", 1)[0] for v in launcher["env_vars"]]
    daemon_env = compose["services"]["daemon"]["environment"]
    assert [v for v in forwarded if v not in daemon_env] == []
    missing = _sync_settings_read_by_the_code() - NOT_FOR_RUNS - set(forwarded)
    assert missing == set(), f"add {sorted(missing)} to dagster.docker.yaml env_vars and docker-compose.yaml x-sync-settings"
    # Run containers share the throttle volume at the throttle directory of every process.
    volume, mount_point = launcher["container_kwargs"]["volumes"][0].split(":")[:2]
    assert daemon_env["MOODLE_THROTTLE_DIR"] == mount_point
    assert compose["volumes"][volume]["name"] == volume
    assert launcher["container_kwargs"]["network_mode"] == "host"
    # Both databases through psycopg2 (a bare postgresql:// means psycopg 3 with SQLAlchemy 2.1).
    assert all(daemon_env[k].startswith("postgresql+psycopg2://") for k in ("DAGSTER_PG_URL", "DATABASE_URL"))
    # Every long-running service on the host network, nothing published.
    for name, service in compose["services"].items():
        assert service["network_mode"] == "host" and "ports" not in service, name


def _dockerignored(path: str) -> bool:
    """Docker's .dockerignore rule for one path: the last matching pattern wins, `!` re-includes."""
    from fnmatch import fnmatchcase

    ignored = False
    for line in (REPO_ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate, pattern = line.startswith("!"), line.lstrip("!")
        variants = {pattern, pattern.removeprefix("**/")}
        if any(fnmatchcase(path, v) or path.startswith(v.rstrip("/") + "/") for v in variants):
            ignored = not negate
    return ignored


def test_secrets_files_stay_out_of_git_and_out_of_the_build_context():
    import subprocess

    for path in ("deploy/.env", "deploy/.env.deploy-test", ".env", "deploy/docker/build-ca/ca-certificates.crt"):
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO_ROOT).returncode == 0, path
    for path in ("deploy/.env", "deploy/.env.deploy-test", ".env", "deploy/.env.local"):
        assert _dockerignored(path), path
    for path in ("deploy/.env.example", "deploy/dagster.docker.yaml", "pyproject.toml", "uv.lock", "deploy/docker/build-ca/README.md"):
        assert not _dockerignored(path), path


def test_the_image_installs_the_run_launchers_from_the_lock():
    """`uv pip install` of the launcher followed by `uv sync` (exact) removed it again: the daemon
    could not load DockerRunLauncher. The launchers are locked extras that the image syncs."""
    import tomllib

    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["docker"] == ["dagster-docker==0.29.27"] and extras["k8s"] == ["dagster-k8s==0.29.27"]
    lock = (REPO_ROOT / "uv.lock").read_text()
    assert 'name = "dagster-docker"\nversion = "0.29.27"' in lock and 'name = "dagster-k8s"\nversion = "0.29.27"' in lock
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert "uv pip install" not in dockerfile
    assert dockerfile.count("--no-dev --extra docker --extra k8s") == 2
