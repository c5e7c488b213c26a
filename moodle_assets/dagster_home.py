"""Where the Dagster instance lives and how it is configured.

`serve`, `sync` and the tests all use a persistent DAGSTER_HOME (default: `data/dagster_home`)
holding a copy of the repo's `dagster.yaml`, so runs from the CLI, the web process and the
daemon share one history that the Dagster UI shows.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from .settings import PROJECT_ROOT, data_dir

INSTANCE_CONFIG = PROJECT_ROOT / "dagster.yaml"
WORKSPACE_FILE = PROJECT_ROOT / "workspace.yaml"


def prepare_dagster_home(home: Path | None = None, config: Path | None = None) -> Path:
    """Make sure DAGSTER_HOME exists and carries our dagster.yaml; export it; return it.

    An operator's own DAGSTER_HOME (with its own dagster.yaml, e.g. PostgreSQL storage) is
    respected and left untouched.
    """
    explicit = os.environ.get("DAGSTER_HOME")
    if home is None and explicit:
        path = Path(explicit).expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        if not (path / "dagster.yaml").exists():
            shutil.copyfile(config or INSTANCE_CONFIG, path / "dagster.yaml")
        return path
    path = (home or data_dir() / "dagster_home").resolve()
    path.mkdir(parents=True, exist_ok=True)
    source = config or INSTANCE_CONFIG
    target = path / "dagster.yaml"
    if not target.exists() or target.read_bytes() != source.read_bytes():
        shutil.copyfile(source, target)
    os.environ["DAGSTER_HOME"] = str(path)
    return path
