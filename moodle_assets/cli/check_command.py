"""`moodle-integration check`: the Moodle connection, one line per check, with the fix.

Exit codes: 0 a full sync can run and sees everything, 1 it cannot run, 3 it can run but will see
less than everything, 2 a configuration error (MOODLE_URL / MOODLE_TOKEN unset or malformed).
`--json` prints the same report as one JSON object (for monitoring). Neither ever shows the token.
"""

from __future__ import annotations

import json
import sys

from resources.moodle_client import ClientSettings, MoodleClient

from ..settings import Settings
from ..sync.check import FAIL, NOTE, OK, SKIP, WARN, CheckReport, config_error_report, run_check
from . import exit_codes

EXIT_CONFIG = exit_codes.USAGE
_MARKS = {OK: "✓", FAIL: "✗", WARN: "!", NOTE: "·", SKIP: "-"}
_ASCII = {OK: "OK  ", FAIL: "FAIL", WARN: "WARN", NOTE: "NOTE", SKIP: "SKIP"}


def _marks() -> dict[str, str]:
    try:
        "✓✗·".encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return _ASCII
    return _MARKS


def render(report: CheckReport, exit_code: int | None = None) -> str:
    marks = _marks()
    code = report.exit_code if exit_code is None else exit_code
    lines = [f"Moodle connection check: {report.url}"]
    for line in report.lines:
        text = f"{marks[line.status]} {line.title}"
        if line.detail:
            text += f": {line.detail}"
        lines.append(text)
        if line.fix and line.status in (FAIL, WARN, NOTE):
            lines.append(f"    fix: {line.fix}")
    verdict = report.verdict if code != EXIT_CONFIG else "a configuration error: fix the variable"
    lines.append(f"Result: {verdict} (exit {code})")
    return "\n".join(lines)


def emit(report: CheckReport, *, as_json: bool, exit_code: int | None = None) -> int:
    code = report.exit_code if exit_code is None else exit_code
    if as_json:
        data = report.as_dict()
        data["exit_code"] = code
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        print(render(report, code))
    return code


def check_config_error(url: str | None, message: str, *, as_json: bool) -> int:
    """A configuration error (exit 2), printed as the failed first check."""
    return emit(config_error_report(url or "(no usable MOODLE_URL)", message), as_json=as_json, exit_code=EXIT_CONFIG)


def cli_check(settings: Settings, *, as_json: bool = False) -> int:
    if not settings.moodle_url:
        return check_config_error(
            None, "MOODLE_URL is not set: give the site's address, e.g. https://lms.example.edu", as_json=as_json
        )
    if not settings.moodle_token:
        return check_config_error(
            settings.moodle_url,
            "MOODLE_TOKEN is not set: the web-service token (docs/moodle-setup.md step 7)",
            as_json=as_json,
        )
    options = settings.moodle_client_options()
    options["max_retries"] = 0  # a check reports what it meets; re-running it is the retry
    client = MoodleClient(settings.moodle_url, settings.moodle_token, ClientSettings(settings.moodle_url, **options))  # type: ignore[arg-type]
    try:
        report = run_check(client, settings.moodle_url)
    finally:
        client.close()
    return emit(report, as_json=as_json)
