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


def test_docker_and_helm_files_name_the_contract_location_and_forward_what_runs_need():
    from moodle_assets.core.targets import CODE_LOCATION_NAME

    compose = yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())
    docker = yaml.safe_load((DEPLOY / "dagster.docker.yaml").read_text())
    app_env = compose["x-app"]["environment"]
    assert set(docker["run_launcher"]["config"]["env_vars"]) <= set(app_env) | {"MOODLE_RATE_LIMIT_REQUESTS_PER_SECOND", "MOODLE_SYNC_HEARTBEAT_TIMEOUT_SECONDS"}
    assert app_env["MOODLE_THROTTLE_DIR"] == docker["run_launcher"]["config"]["container_kwargs"]["volumes"][0].split(":")[1]
    assert all(url.startswith("postgresql+psycopg2://") for k, url in app_env.items() if k in ("DAGSTER_PG_URL", "DATABASE_URL"))
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    assert values["dagsterWebserver"]["workspace"]["servers"][0]["name"] == CODE_LOCATION_NAME
    workspace = yaml.safe_load((DEPLOY / "workspace.grpc.yaml").read_text())
    assert workspace["load_from"][0]["grpc_server"]["location_name"] == CODE_LOCATION_NAME
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert '"--location-name", "moodle_integration"' in dockerfile and "uv sync --frozen --no-dev" in dockerfile
