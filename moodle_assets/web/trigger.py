"""`POST /api/integration/moodle/sync`: the HTTP trigger for cron, CI and hosted schedulers.

Contract (docs/contracts.md "HTTP trigger"), in the order the checks run:

- any method but POST → 405 with `Allow: POST` (the route takes every method, so a GET never
  falls through to the Dagster UI's catch-all page);
- `MOODLE_SYNC_CRON_SECRET` unset → 503;
- secret missing or wrong (`x-sync-secret: <secret>` or `Authorization: Bearer <secret>`,
  compared in constant time) → 401;
- body over 16 KiB → 413;
- bad body → 400 with a precise message. The body is optional; when present it is a JSON
  object with only the keys `targets` (a non-empty list of target names, e.g.
  `"COURSE_CATALOG"`; `"course_catalog"` and `"sync_course_catalog"` are accepted too) and
  `force` (a boolean, default false). An empty `targets` list is a 400: it would otherwise be
  ambiguous between "nothing" and "everything";
- otherwise 202 with a JSON list, one entry per target, in dependency order:
  `{target, outcome: LAUNCHED|SKIPPED, reason, sync_run_id, dagster_run_id, held_by}`.
  `held_by` is set when the target was SKIPPED because another live sync holds it (try again
  later; the CLI exits 75 then): `{sync_run_id, started_at, heartbeat_at, dagster_run_id,
  host, pid}`, and `reason` names the same holder. A sync whose worker died does not hold
  its target: its row is closed ("worker lost") and the target launched.

Which targets: with no body (or `{}` / only `force`), every enabled target that is due; the
others are reported SKIPPED ("disabled" / "not due until ...") with `sync_run_id: null`,
because a cron job polling every minute would otherwise fill the history with rows that say
nothing. Targets named in `targets` are synced now whatever the schedule says (like the CLI),
even when disabled. `force: true` starts a run even if one is in progress.

Launched targets of one request share ONE Dagster run (`sync_all` restricted to them, so
enrollments run after catalog and users). Concurrent calls never start two runs of one
target: the history's unique RUNNING row decides, and losers get SKIPPED rows with the
reason. trigger=API. The secret is never logged or echoed.
"""

from __future__ import annotations

import json

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from schedules.config_table import list_configs
from schedules.due import is_due

from ..core.clock import utcnow
from ..core.redaction import redact
from ..core.targets import LaunchOutcome, SyncTarget, SyncTrigger
from ..orchestration.launch import TargetOutcome, ordered
from .common import BodyTooLarge, any_method_route, log, read_body
from .launcher import launch_targets
from .security import secrets_equal

TRIGGER_PATH = "/api/integration/moodle/sync"
ALLOWED_KEYS = ("targets", "force")


class BadRequest(ValueError):
    pass


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": message}, status_code=status, headers={"Cache-Control": "no-store", **(headers or {})}
    )


def presented_secret(request: Request) -> str | None:
    header = request.headers.get("x-sync-secret")
    if header:
        return header
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def parse_body(raw: bytes) -> tuple[list[SyncTarget] | None, bool]:
    """(targets or None for "every due target", force) from the optional JSON body."""
    if not raw.strip():
        return None, False
    try:
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadRequest("body must be UTF-8 encoded JSON") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:  # ~1,000 nested brackets fit in 16 KiB; json.loads recurses per level
        raise BadRequest("body is not valid JSON for this endpoint: nested too deeply") from None
    if not isinstance(body, dict):
        raise BadRequest(
            'body must be a JSON object like {"targets": ["COURSE_CATALOG"], "force": false}, '
            f"got {type(body).__name__ if body is not None else 'null'}"
        )
    unknown = sorted(set(body) - set(ALLOWED_KEYS))
    if unknown:
        raise BadRequest(f"unknown key(s) {', '.join(map(repr, unknown))}; allowed: targets, force")
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise BadRequest(f"force must be true or false, got {json.dumps(force)}")
    if "targets" not in body or body["targets"] is None:
        return None, force
    names = body["targets"]
    if not isinstance(names, list):
        raise BadRequest(f"targets must be a list of target names, got {type(names).__name__}")
    if not names:
        raise BadRequest("targets is empty; name at least one target, or omit targets to sync every due target")
    targets: list[SyncTarget] = []
    for name in names:
        if not isinstance(name, str):
            raise BadRequest(f"targets must contain strings, got {json.dumps(name)}")
        try:
            target = SyncTarget.parse(name)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        if target not in targets:
            targets.append(target)
    return targets, force


def _run_trigger(webserver, request: Request, targets: list[SyncTarget] | None, force: bool) -> list[dict]:
    skipped: list[TargetOutcome] = []
    if targets is None:
        now = utcnow()
        targets = []
        for config in list_configs(webserver.engine):
            if not config.enabled:
                reason = "disabled (enable it on the admin page, or name it in targets)"
                skipped.append(TargetOutcome(config.target, LaunchOutcome.SKIPPED, reason, None))
            elif not is_due(enabled=True, next_run_at=config.next_run_at, now=now):
                reason = f"not due until {config.next_run_at:%Y-%m-%d %H:%M:%SZ}"
                skipped.append(TargetOutcome(config.target, LaunchOutcome.SKIPPED, reason, None))
            else:
                targets.append(config.target)
    outcomes: list[TargetOutcome] = []
    if targets:
        outcomes = launch_targets(webserver, request, targets, trigger=SyncTrigger.API, force=force)
    by_target = {o.target: o for o in skipped + outcomes}
    return [by_target[t].as_json() for t in ordered(list(by_target))]


def make_trigger_endpoint(webserver):
    async def trigger(request: Request) -> Response:
        if request.method != "POST":
            return _error(405, f"use POST (got {request.method})", {"Allow": "POST"})
        secret = webserver.settings.sync_secret
        if not secret:
            return _error(503, "the sync trigger is disabled: set MOODLE_SYNC_CRON_SECRET on the server to enable it")
        if not secrets_equal(presented_secret(request), secret):
            log.warning(
                "sync trigger from %s refused: %s secret",
                request.client.host if request.client else "?",
                "wrong" if presented_secret(request) else "no",
            )
            return _error(
                401,
                "missing or wrong secret: send it as 'x-sync-secret: <secret>' or 'Authorization: Bearer <secret>'",
                {"WWW-Authenticate": 'Bearer realm="moodle-sync"'},
            )
        try:
            raw = await read_body(request)
            targets, force = parse_body(raw)
        except BodyTooLarge:
            return _error(413, "body too large (limit 16 KiB)")
        except BadRequest as exc:
            return _error(400, redact(str(exc)) or "bad request")  # it may quote what was sent: never echo a secret
        results = await run_in_threadpool(_run_trigger, webserver, request, targets, force)
        log.info(
            "sync trigger from %s (force=%s): %s",
            request.client.host if request.client else "?",
            force,
            ", ".join(f"{r['target']} {r['outcome']}" + (f" ({r['reason']})" if r["reason"] else "") for r in results)
            or "nothing to do",
        )
        return JSONResponse(results, status_code=202, headers={"Cache-Control": "no-store"})

    return trigger


def trigger_routes(webserver) -> list:
    # Every method reaches the endpoint, which answers 405 itself for all but POST.
    return [any_method_route(TRIGGER_PATH, make_trigger_endpoint(webserver), name="moodle-sync-trigger")]
