"""The CLI's exit codes, for scripts and cron wrappers (documented in `--help` and the README)."""

OK = 0  # done (sync: every requested target synced; check: a full sync can run and sees everything)
FAILED = 1  # the operation failed (sync: a target FAILED; check: a sync cannot run)
USAGE = 2  # bad usage or configuration (an environment variable unset or malformed)
PARTIAL = 3  # check only: a sync can run but will see less than everything (missing capabilities)
BUSY = 75  # EX_TEMPFAIL (sync): a target was not synced because another live sync holds it; try again later
INTERRUPTED = 130  # Ctrl-C

EPILOG = f"""exit codes:
  {OK}   success (sync: every target synced; check: a full sync can run and sees everything)
  {FAILED}   the operation failed (sync: a target FAILED; check: a sync cannot run); the cause and the fix are printed
  {USAGE}   bad usage or configuration (an environment variable unset or malformed); runs, config show and
       changes: the app database does not exist (they never create one; `db upgrade` does)
  {PARTIAL}   check only: a sync can run but will see less than everything (missing capabilities)
  {BUSY}  sync only: a target was not synced because another live sync holds it (printed as SKIPPED with the
       holder: sync run, Dagster run, host and pid): try again later; a sync whose worker died never blocks
  {INTERRUPTED} interrupted (Ctrl-C)"""
