"""The CLI's exit codes, for scripts and cron wrappers (documented in `--help` and the README)."""

OK = 0  # done: every requested target synced
FAILED = 1  # a sync (or another operation) failed
USAGE = 2  # bad usage or configuration
BUSY = 75  # EX_TEMPFAIL: a target was not synced because another live sync holds it; try again later

EPILOG = (
    "exit codes: 0 ok; 1 failed; 2 bad usage or configuration; "
    "75 (sync) a target was not synced because another live sync holds it: try again later"
)
