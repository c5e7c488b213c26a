"""One typed settings layer: every variable declared once, validated at start-up, the README's
table rendered from it, and nothing else in the product reading the environment."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from moodle_assets.settings import ConfigError, declared_variables, load_settings
from moodle_assets.settings.reference import BEGIN, END, render_table

REPO_ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("moodle_assets", "resources", "schedules", "sensors")
_VAR = re.compile(r"\b(MOODLE_[A-Z0-9_]*[A-Z0-9]|DATABASE_URL|DAGSTER_HOME)\b")
# Named in the product but not ours to declare: Dagster's own workspace variables for a
# separate code server (deploy/workspace.grpc.yaml), read by Dagster itself.
NOT_SETTINGS = {"MOODLE_CODE_SERVER_HOST", "MOODLE_CODE_SERVER_PORT"}


def test_readme_table_is_the_rendered_settings():
    readme = (REPO_ROOT / "README.md").read_text()
    table = readme[readme.index(BEGIN) + len(BEGIN) : readme.index(END)].strip()
    assert table == render_table(), "run: python -m moodle_assets.settings.reference --write README.md"


def test_every_variable_the_product_names_is_declared():
    declared = {name for name, *_ in declared_variables()}
    named: dict[str, set[str]] = {}
    for top in PRODUCT:
        for path in (REPO_ROOT / top).rglob("*.py"):
            for name in _VAR.findall(path.read_text()):
                named.setdefault(name, set()).add(str(path.relative_to(REPO_ROOT)))
    undeclared = {k: sorted(v) for k, v in named.items() if k not in declared and k not in NOT_SETTINGS}
    assert undeclared == {}


def test_only_the_entry_points_touch_the_environment():
    """The settings module reads it; the edges that start other processes write resolved values
    into it for them (serve/sync, the demo); nobody else reads `os.environ`."""
    users = set()
    for top in PRODUCT:
        for path in (REPO_ROOT / top).rglob("*.py"):
            if re.search(r"os\.environ|os\.getenv|getenv\(", path.read_text()):
                users.add(str(path.relative_to(REPO_ROOT)))
    assert users == {
        "moodle_assets/settings/model.py",
        "moodle_assets/orchestration/instance.py",
        "moodle_assets/web/demo.py",
        "moodle_assets/web/serve.py",
    }


def test_defaults_are_valid_and_derived_paths_follow_the_data_dir(tmp_path):
    settings = load_settings({"MOODLE_INTEGRATION_DATA_DIR": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path / 'moodle_integration.sqlite3'}"
    assert settings.dagster_home == tmp_path / "dagster_home"
    assert (settings.max_retries, settings.base_delay_ms, settings.max_delay_ms) == (3, 600, 8000)


def test_relative_paths_mean_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings({"MOODLE_INTEGRATION_DATA_DIR": "mydata", "DATABASE_URL": "sqlite:///db/app.sqlite3"})
    assert settings.data_dir == tmp_path / "mydata"
    assert settings.database_url == f"sqlite:///{tmp_path / 'db' / 'app.sqlite3'}"


@pytest.mark.parametrize(
    "env, message",
    [
        ({"MOODLE_URL": "lms.example.edu"}, "MOODLE_URL must be an http:// or https:// URL"),
        ({"MOODLE_URL": "https://lms.example.edu/moodle/webservice/rest/server.php"},
         "MOODLE_URL must be the site's base URL (its $CFG->wwwroot), not a page of it: use https://lms.example.edu/moodle"),
        ({"MOODLE_URL": "https://lms.example.edu/login/index.php"}, "MOODLE_URL must be the site's base URL"),
        ({"DATABASE_URL": "mysql://u:hunter2@db/x"}, "DATABASE_URL must be a SQLAlchemy URL"),
        ({"MOODLE_DEFAULT_CURRENCY": "EURO"}, "MOODLE_DEFAULT_CURRENCY must be a 3-letter"),
        ({"MOODLE_SYNC_CONCURRENCY": "0"}, "MOODLE_SYNC_CONCURRENCY must be greater than or equal to 1"),
        ({"MOODLE_SYNC_HEARTBEAT_TIMEOUT_SECONDS": "2"}, "MOODLE_SYNC_HEARTBEAT_TIMEOUT_SECONDS must be"),
        ({"MOODLE_INTEGRATION_LOG_LEVEL": "chatty"}, "MOODLE_INTEGRATION_LOG_LEVEL must be one of"),
    ],
)
def test_bad_values_are_one_line_naming_the_variable_and_never_echo_a_password(env, message):
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    text = str(info.value)
    assert text.startswith(message.split()[0]) and message in text and "\n" not in text
    assert "hunter2" not in text


def test_describe_masks_secrets_and_passwords():
    settings = load_settings({
        "MOODLE_TOKEN": "tok-0123456789", "MOODLE_SYNC_CRON_SECRET": "cron-0123456789",
        "DATABASE_URL": "postgresql://sync:hunter2@db.example.edu/school",
    })
    shown = settings.describe()
    text = repr(shown)
    assert "tok-0123456789" not in text and "cron-0123456789" not in text and "hunter2" not in text
    assert shown["MOODLE_TOKEN"] == "(set)" and shown["DATABASE_URL"].startswith("postgresql://sync:***@")


@pytest.mark.parametrize("url", ["https://lms.example.edu/", "https://example.edu/moodle", "http://127.0.0.1:8089"])
def test_site_urls_are_accepted_without_the_trailing_slash(url):
    assert load_settings({"MOODLE_URL": url}).moodle_url == url.rstrip("/")
