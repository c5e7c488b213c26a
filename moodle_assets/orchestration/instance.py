"""Where the Dagster instance lives and how it is configured.

`serve`, `sync` and the tests share a persistent DAGSTER_HOME (default: `dagster_home/` in the
data dir) holding the project's `dagster.yaml`, so runs from the CLI, the web process and the
daemon share one history that the Dagster UI shows. The instance and workspace files are the
checkout's top-level `dagster.yaml` / `workspace.yaml`; an installed wheel carries the same two
files as package data (`defaults/`, see pyproject's `force-include`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..settings import Settings

_CHECKOUT_ROOT = Path(__file__).resolve().parents[2]
_PACKAGED = Path(__file__).resolve().parent / "defaults"


def _project_file(name: str) -> Path:
    packaged = _PACKAGED / name
    return packaged if packaged.exists() else _CHECKOUT_ROOT / name


INSTANCE_CONFIG = _project_file("dagster.yaml")
WORKSPACE_FILE = _project_file("workspace.yaml")


def prepare_dagster_home(home: Path, *, default_home: Path | None = None, config: Path | None = None) -> Path:
    """Make sure `home` exists and carries an instance config; export it as DAGSTER_HOME; return it.

    The default home (`default_home`) always gets the project's current `dagster.yaml`; an
    operator's own DAGSTER_HOME that already has a `dagster.yaml` (e.g. PostgreSQL storage) is
    left untouched.
    """
    path = home.expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    source = config or INSTANCE_CONFIG
    target = path / "dagster.yaml"
    own_home = default_home is not None and path != default_home.expanduser().resolve()
    if not target.exists() or (not own_home and target.read_bytes() != source.read_bytes()):
        shutil.copyfile(source, target)
    os.environ["DAGSTER_HOME"] = str(path)
    return path


def export_for_children(settings: Settings) -> None:
    """Hand the resolved paths to the processes this one starts (daemon, code server, run
    workers), so a relative path means what it meant where the user typed it."""
    os.environ["MOODLE_INTEGRATION_DATA_DIR"] = str(settings.data_dir)
    if settings.database_url_from_env:
        os.environ["DATABASE_URL"] = settings.database_url
    if settings.throttle_dir is not None:
        os.environ["MOODLE_THROTTLE_DIR"] = str(settings.throttle_dir)
