"""Where the CLI's and the web process's own log lines go: stderr, at MOODLE_INTEGRATION_LOG_LEVEL,
one line each, with every registered secret masked (`core.redaction`).

Audit lines (who triggered which sync, schedule changes, sign-ins) are INFO lines of the
`moodle_assets.web` logger. Inside a Dagster run, the client's and the sync's loggers are
managed by Dagster instead (`python_logs` in dagster.yaml) and land in the run's event log.
"""

from __future__ import annotations

import logging
import sys

from ..core.redaction import redact

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
OUR_LOGGERS = ("moodle_assets", "resources", "schedules", "sensors")
_HANDLER_NAME = "moodle-integration-stderr"


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record)) or ""


def configure_logging(level: str) -> None:
    """Send our loggers' lines to stderr at `level` (idempotent; Dagster's own loggers keep theirs)."""
    for name in OUR_LOGGERS:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if h.get_name() == _HANDLER_NAME]:
            # Replaced, not reused: an earlier call may have bound a stderr that has since been
            # swapped or closed (a test runner's capture, a redirected CLI invocation).
            logger.removeHandler(old)
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name(_HANDLER_NAME)
        handler.setFormatter(RedactingFormatter(FORMAT, datefmt="%Y-%m-%dT%H:%M:%S%z"))
        logger.addHandler(handler)
        logger.setLevel(level)
