"""`moodle-integration`: the command-line interface.

Every subcommand validates the environment first, so a bad setting fails with one line
naming the variable. Every failure is printed as its cause and its fix, without a Python
traceback (`--verbose` adds it). Exit codes: `exit_codes.py` (0 ok, 1 failed, 2 usage or config,
3 check sees less than everything, 75 sync target held by another live sync).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..core.targets import SyncTarget
from ..core.validation import ConfigError
from ..settings import Settings, load_settings
from ..web.demo import EmulatorMissing
from . import exit_codes
from .database import open_existing
from .logging_setup import configure_logging


def _targets_help() -> str:
    return ", ".join(t.value for t in SyncTarget)


def _target_arg(value: str) -> SyncTarget:
    try:
        return SyncTarget.parse(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moodle-integration",
        description="Keep your database in step with a Moodle site (courses, users, enrollments) through Dagster.",
        epilog=exit_codes.EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="on failure, also print the Python traceback and Dagster's log"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser(
        "check",
        help="check the Moodle connection: URL, token, service functions, capabilities",
        description="Check that a full sync can run against MOODLE_URL with MOODLE_TOKEN: one line per check "
        "(the URL, web services and REST, the token, the site's release, the service's functions, the account, "
        "and each capability the sync relies on), with the fix for each failure. See docs/moodle-setup.md.",
        epilog=exit_codes.EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("--json", action="store_true", help="print the report as one JSON object (for monitoring)")

    db = sub.add_parser(
        "db", help="manage the app database schema", description="Manage the app database schema (Alembic)."
    )
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_sub.add_parser("upgrade", help="apply pending migrations (idempotent)")
    down = db_sub.add_parser("downgrade", help="revert migrations to REVISION (e.g. base)")
    down.add_argument("revision")
    db_sub.add_parser("current", help="print the applied revision")

    config = sub.add_parser(
        "config", help="show or change per-target schedules", description="Per-target sync schedules."
    )
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    config_sub.add_parser("show", help="print each target's schedule")
    cset = config_sub.add_parser("set", help="enable/disable a target or change its frequency")
    cset.add_argument("target", type=_target_arg, metavar="TARGET", help=f"one of {_targets_help()}")
    toggle = cset.add_mutually_exclusive_group()
    toggle.add_argument("--enable", dest="enabled", action="store_const", const=True, help="let the schedule run it")
    toggle.add_argument("--disable", dest="enabled", action="store_const", const=False, help="never run it on schedule")
    cset.add_argument("--every", dest="every", metavar="MINUTES", help="sync every MINUTES minutes")

    sync = sub.add_parser(
        "sync",
        help="run a sync now, through Dagster",
        description="Run a sync now through Dagster (the run shows in the UI), whatever the schedule says. Prints "
        "each target's outcome; on failure its cause and fix (the full log stays in the Dagster run).",
        epilog=exit_codes.EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    which = sync.add_mutually_exclusive_group()
    which.add_argument(
        "--target",
        dest="targets",
        action="append",
        type=_target_arg,
        metavar="T",
        help=f"one of {_targets_help()} (repeatable)",
    )
    which.add_argument("--all", action="store_true", help="every target (the default)")
    sync.add_argument("--force", action="store_true", help="run even if the target is already syncing")

    runs = sub.add_parser("runs", help="recent sync runs", description="List recent sync runs, newest first.")
    runs.add_argument("--target", type=_target_arg, metavar="T")
    runs.add_argument("--limit", type=int, default=20)

    changes = sub.add_parser(
        "changes",
        help="what the syncs changed (the change log)",
        description="List what the syncs changed, row by row, from the change log (integration_change_log): time, "
        "sync run, target, entity, Moodle key, kind (inserted, updated, deactivated, reactivated) and the changed "
        "columns. Prints the database it reads; never creates one.",
    )
    picked = changes.add_mutually_exclusive_group()
    picked.add_argument("--run", type=int, metavar="N", help="the changes of sync run N (see `runs`)")
    picked.add_argument("--since", metavar="T", help="changes since T: an ISO time (UTC if no zone) or 24h, 7d, 30m")
    changes.add_argument("--target", type=_target_arg, metavar="T", help=f"one of {_targets_help()}")
    changes.add_argument("--json", action="store_true", help="print one JSON object (database, total, changes)")
    changes.add_argument("--limit", type=int, default=100, help="show the last N matching changes (default 100)")

    serve = sub.add_parser(
        "serve",
        help="run the web process (Dagster UI + admin page) and the daemon",
        description="Run the Dagster UI, the admin page and the trigger endpoint on one port, plus the daemon.",
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=3000)
    serve.add_argument("--no-daemon", action="store_true", help="do not start dagster-daemon (run it yourself)")
    serve.add_argument(
        "--workspace",
        type=Path,
        default=None,
        help="workspace file (default: the project's workspace.yaml; deploy/workspace.grpc.yaml for a separate "
        "code server)",
    )

    emulator = sub.add_parser(
        "emulator",
        help="run the bundled Moodle emulator",
        description="Run the bundled Moodle web-service emulator. Options: see `moodle-integration emulator --help`.",
        add_help=False,
    )
    emulator.add_argument("emulator_args", nargs=argparse.REMAINDER)
    # --verbose also after the command (`moodle-integration sync --verbose`, `config show -v`).
    for name, subparser in sub.choices.items():
        if name != "emulator":
            _add_verbose(subparser)
    return parser


def _add_verbose(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="print the traceback on failure"
    )
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for nested in action.choices.values():
                _add_verbose(nested)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["emulator"]:
        from ..web.demo import run_emulator_command

        return run_emulator_command(argv[1:])
    args = build_parser().parse_args(argv)
    settings: Settings | None = None
    try:
        settings = load_settings()
        configure_logging(settings.log_level)
        return _dispatch(args, settings)
    except ConfigError as exc:
        if args.command == "check":
            from .check_command import check_config_error

            return check_config_error(None, str(exc), as_json=args.json)
        print(f"configuration error: {exc}", file=sys.stderr)
        return exit_codes.USAGE
    except EmulatorMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_codes.USAGE
    except KeyboardInterrupt:
        return exit_codes.INTERRUPTED
    except Exception as exc:  # the boundary: a person gets the cause and the fix, not a traceback
        from .failures import report_exception

        return report_exception(exc, database_url=settings.database_url if settings else None, verbose=args.verbose)


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    from ..store.db import engine_for
    from ..store.migrate import current_revision, downgrade, upgrade

    if args.command == "db":
        if args.db_command == "upgrade":
            upgrade(settings.database_url)
            print(f"database at revision {current_revision(settings.database_url)}")
        elif args.db_command == "downgrade":
            downgrade(settings.database_url, args.revision)
            print(f"database at revision {current_revision(settings.database_url) or 'base'}")
        else:
            print(current_revision(settings.database_url) or "base (no migrations applied)")
        return 0
    if args.command == "config":
        from schedules.config_table import ConfigValidationError, list_configs, update_config

        if args.config_command == "show":
            refused = open_existing(settings)
            if refused is not None:
                return refused
        else:
            upgrade(settings.database_url)
        engine = engine_for(settings.database_url)
        if args.config_command == "set":
            if args.enabled is None and args.every is None:
                print("nothing to change: give --enable, --disable and/or --every MINUTES", file=sys.stderr)
                return 2
            try:
                update_config(engine, args.target, enabled=args.enabled, frequency_minutes=args.every)
            except ConfigValidationError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
        _print_configs(list_configs(engine))
        return 0
    if args.command == "serve":
        from ..web.serve import serve

        return serve(settings, args.host, args.port, daemon=not args.no_daemon, workspace=args.workspace)
    if args.command == "check":
        from .check_command import cli_check

        return cli_check(settings, as_json=args.json)
    if args.command == "sync":
        from .sync_command import cli_sync

        return cli_sync(settings, args.targets or list(SyncTarget), force=args.force, verbose=args.verbose)
    if args.command == "runs":
        from ..history import SyncHistory
        from .history_output import print_runs

        refused = open_existing(settings)
        if refused is not None:
            return refused
        history = SyncHistory(engine_for(settings.database_url), heartbeat_timeout=settings.heartbeat_timeout_seconds)
        return print_runs(history, target=args.target, limit=args.limit)
    if args.command == "changes":
        return _changes(args, settings)
    raise AssertionError(args.command)


def _changes(args: argparse.Namespace, settings: Settings) -> int:
    from ..core.clock import utcnow
    from ..store.changelog import ChangeFilter
    from ..store.db import engine_for
    from .changes_output import parse_since, print_changes
    from .database import describe_database

    if args.limit < 1:
        print("error: --limit must be at least 1", file=sys.stderr)
        return exit_codes.USAGE
    try:
        since = parse_since(args.since, now=utcnow()) if args.since else None
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_codes.USAGE
    refused = open_existing(settings, header=sys.stderr if args.json else None)
    if refused is not None:
        return refused
    where = ChangeFilter(run_id=args.run, since=since, target=args.target.value if args.target else None)
    return print_changes(
        engine_for(settings.database_url),
        where,
        limit=args.limit,
        as_json=args.json,
        database=describe_database(settings).removeprefix("database: "),
    )


def _fmt(value) -> str:
    if value is None:
        return "-"
    if hasattr(value, "strftime"):
        return value.strftime("%Y-%m-%d %H:%M:%SZ")
    return str(value)


def _print_configs(configs) -> None:
    header = f"{'TARGET':<16} {'ENABLED':<8} {'EVERY':>9}  {'LAST RUN':<21} {'NEXT RUN':<21}"
    print(header)
    for c in configs:
        every = f"{c.frequency_minutes} min"
        print(
            f"{c.target.value:<16} {'yes' if c.enabled else 'no':<8} {every:>9}  "
            f"{_fmt(c.last_run_at):<21} {_fmt(c.next_run_at):<21}"
        )


if __name__ == "__main__":
    sys.exit(main())
