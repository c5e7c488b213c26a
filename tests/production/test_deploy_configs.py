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
    from moodle_assets.core.targets import CODE_LOCATION_NAME

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
    "MOODLE_INTEGRATION_DATA_DIR", "MOODLE_SCHEDULE_SENSOR_INTERVAL_SECONDS", "MOODLE_INTEGRATION_LOG_LEVEL",
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
    for path in ("deploy/dagster.docker.yaml", "deploy/workspace.grpc.yaml", "pyproject.toml", "uv.lock",
                 "deploy/docker/build-ca/README.md"):
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


# --- Kubernetes: deploy/helm against the dagster/dagster chart --------------------------------

HELM = DEPLOY / "helm"
CHART_SCHEMA = REPO_ROOT / "tests" / "production" / "fixtures" / "helm" / "dagster-values.schema.json"
RELEASE = "moodle"  # the release name deploy/README.md and values.yaml install with


def _chart_values_validator():
    """The chart's schema, for a partial values file (see fixtures/helm/README.md): the objects'
    `required` lists dropped (the chart's defaults fill those in), the references to Kubernetes
    object schemas on GitHub dropped (no network; their sibling type constraints stay)."""
    import json

    from jsonschema import Draft202012Validator

    def strip(node):
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items()
                    if not (k == "$ref" and isinstance(v, str) and v.startswith("http"))}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    schema = strip(json.loads(CHART_SCHEMA.read_text()))
    schema.pop("required")
    for definition in schema["$defs"].values():
        definition.pop("required", None)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _errors(validator, values) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in validator.iter_errors(values)]


def test_helm_values_match_the_chart_schema():
    values = yaml.safe_load((HELM / "values.yaml").read_text())
    assert _errors(_chart_values_validator(), values) == []


def test_the_chart_schema_check_catches_mistakes():
    """Not vacuous: a misspelt key, a wrong type and an unknown launcher are each refused."""
    import copy

    validator = _chart_values_validator()
    values = yaml.safe_load((HELM / "values.yaml").read_text())
    misspelt = copy.deepcopy(values)
    misspelt["runLauncher"]["config"]["k8sRunLauncher"]["envSecret"] = misspelt["runLauncher"]["config"]["k8sRunLauncher"].pop("envSecrets")
    wrong_type = copy.deepcopy(values)
    wrong_type["postgresql"]["postgresqlScheme"] = 5
    unknown = copy.deepcopy(values)
    unknown["runLauncher"]["type"] = "K8sLauncher"
    for broken in (misspelt, wrong_type, unknown):
        assert _errors(validator, broken)


def test_helm_instance_storage_uses_psycopg2():
    """The chart renders postgres_db with `scheme` from postgresql.postgresqlScheme; dagster-postgres
    turns it into the URL every pod of the project image opens. Without it: psycopg 3, absent."""
    from dagster_postgres.utils import pg_url_from_config
    from sqlalchemy.engine import make_url

    pg = yaml.safe_load((HELM / "values.yaml").read_text())["postgresql"]
    db = {"username": pg["postgresqlUsername"], "password": "x", "hostname": pg["postgresqlHost"],
          "db_name": pg["postgresqlDatabase"], "port": pg["service"]["port"]}
    url = pg_url_from_config({"postgres_db": {**db, "scheme": pg["postgresqlScheme"]}})
    assert make_url(url).get_dialect().driver == "psycopg2"
    assert make_url(pg_url_from_config({"postgres_db": db})).get_dialect().driver == "psycopg"  # the failure mode


def test_every_helm_command_pins_the_chart_to_the_code_dagster_version():
    """Without --version, helm installs the newest chart and its newest webserver/daemon images
    beside code pinned to dagster 1.13.27."""
    import re
    from importlib.metadata import version

    pinned = version("dagster")
    assert pinned == "1.13.27"
    commands = [line for path in [DEPLOY / "README.md", *HELM.glob("*.yaml")]
                for line in path.read_text().splitlines()
                if re.search(r"\bhelm (upgrade|install|template|pull)\b", line)]
    assert commands, "no helm command documented"
    assert [c for c in commands if f"--version {pinned}" not in c] == []
    assert all(f"--install {RELEASE} " in c for c in commands if "upgrade --install" in c)


def test_the_web_pod_runs_as_the_chart_service_account_and_mounts_its_configmaps():
    """The chart binds its Role (Jobs, pods) to its service account; the web process needs it to
    terminate a run (K8sRunLauncher deletes the run's Job). Chart names for a release R:
    fullname = "R-dagster" (the chart name is not part of R), ConfigMaps "<fullname>-instance" and
    "<fullname>-workspace-yaml", service account = global.serviceAccountName."""
    values = yaml.safe_load((HELM / "values.yaml").read_text())
    assert values["rbacEnabled"] is True and values["serviceAccount"]["create"] is True
    docs = [d for d in yaml.safe_load_all((HELM / "moodle-web.yaml").read_text()) if d]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == values["global"]["serviceAccountName"]
    fullname = f"{RELEASE}-dagster"
    configmaps = {v["configMap"]["name"] for v in pod["volumes"]}
    assert configmaps == {f"{fullname}-instance", f"{fullname}-workspace-yaml"}
    (container,) = pod["containers"]
    password = [e for e in container["env"] if e["name"] == "DAGSTER_PG_PASSWORD"][0]
    assert password["valueFrom"]["secretKeyRef"]["name"] == values["global"]["postgresqlSecretName"]
