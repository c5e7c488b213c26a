"""The HTTP server: Moodle's REST endpoint plus the ``/__emulator__/`` control API."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from . import costmodel, errors
from .dataset import Dataset
from .encoding import is_large, iter_php_json, php_json_bytes, xml_error, xml_response
from .errors import WebServiceException
from .faults import FaultConfig, FaultConfigError, FaultState, retry_after_header
from .functions import FUNCTIONS, OTHER_KNOWN_FUNCTIONS, SERVICE_FUNCTIONS, SITE_INFO_XML_KEYS, Ctx
from .tokens import (AUTHORISED_USERS, EXPIRED, IP_RESTRICTED, NOLOGIN, REQUIRED_CAPABILITY, REST_USE,
                     SERVICE_DISABLED, SUSPENDED, TokenSpec, as_spec)
from .mutations import MutationError, apply_ops
from .params import merge_get_post, parse_php_query, validate

REST_PATH = "/webservice/rest/server.php"
CONTROL_PREFIX = "/__emulator__/"
RESERVED = {"wstoken", "wsfunction", "moodlewsrestformat", "moodlewssettingraw", "moodlewssettingfileurl",
            "moodlewssettingfilter", "moodlewssettinglang", "moodlewssettingtimezone"}

MOODLE_HEADERS = [
    ("Cache-Control", "private, must-revalidate, pre-check=0, post-check=0, max-age=0"),
    ("Expires", "Thu, 01 Jan 1970 00:00:00 GMT"),
    ("Pragma", "no-cache"),
    ("Accept-Ranges", "none"),
    ("Access-Control-Allow-Origin", "*"),
]
JSON_HEADERS = [("Content-type", "application/json")] + MOODLE_HEADERS
XML_HEADERS = [("Content-Type", "application/xml; charset=utf-8"),
               ("Content-Disposition", 'inline; filename="response.xml"')] + MOODLE_HEADERS

# release/version announced by site_info for each exception style
STYLE_RELEASES = {"4.4": ("4.4.4 (Build: 20241007)", "2024042204.00")}

_PROXY_PAGE = ("<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n<center><h1>{code} {reason}"
               "</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
_REASONS = {429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Temporarily Unavailable", 504: "Gateway Time-out"}
_HTML_ERROR_PAGE = ("<!DOCTYPE html>\n<html><head><title>Error</title></head><body>\n"
                    "<div class=\"errorbox\"><p class=\"errormessage\">Error reading from database</p>"
                    "<p class=\"errorcode\"><a href=\"https://docs.moodle.org/en/error/moodle/dbconnectionfailed\">"
                    "More information about this error</a></p></div>\n</body></html>\n")


class Counters:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with getattr(self, "lock", threading.Lock()):
            self.requests_total = 0
            self.by_function: Counter = Counter()
            self.by_status: Counter = Counter()
            self.faults_injected: Counter = Counter()
            self.server_time_ms = 0.0
            self.server_time_ms_by_function: Counter = Counter()
            self.peak_concurrency = getattr(self, "in_flight", 0)
            self.peak_active = getattr(self, "active", 0)
            self.in_flight = getattr(self, "in_flight", 0)
            self.active = getattr(self, "active", 0)

    def begin(self, function: str) -> None:
        with self.lock:
            self.requests_total += 1
            self.by_function[function] += 1
            self.in_flight += 1
            self.peak_concurrency = max(self.peak_concurrency, self.in_flight)

    def end(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def activate(self, delta: int) -> None:
        with self.lock:
            self.active += delta
            self.peak_active = max(self.peak_active, self.active)

    def status(self, status, fault: str | None = None) -> None:
        with self.lock:
            self.by_status[str(status)] += 1
            if fault:
                self.faults_injected[fault] += 1

    def charge(self, function: str, ms: float) -> None:
        with self.lock:
            self.server_time_ms += ms
            self.server_time_ms_by_function[function] += ms

    def snapshot(self) -> dict:
        with self.lock:
            return {
                "requests_total": self.requests_total,
                "by_function": dict(self.by_function),
                "by_status": dict(self.by_status),
                "responses_429": self.by_status.get("429", 0),
                "faults_injected": dict(self.faults_injected),
                "peak_concurrency": self.peak_concurrency,
                "peak_active": self.peak_active,
                "in_flight": self.in_flight,
                "server_time_ms": round(self.server_time_ms, 3),
                "server_time_ms_by_function": {k: round(v, 3) for k, v in self.server_time_ms_by_function.items()},
            }


class _DropConnection(Exception):
    pass


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    emulator: "EmulatorServer"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else keep-alive + delayed ACK adds ~40 ms per request
    server_version = "Apache"
    sys_version = ""

    def log_message(self, format, *args):  # noqa: A002 - keep the test output quiet
        pass

    def do_GET(self):  # noqa: N802
        self._dispatch("GET")

    def do_POST(self):  # noqa: N802
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        emu = self.server.emulator
        try:
            if parts.path == REST_PATH:
                emu._handle_ws(self, method, parts.query, body)
            elif parts.path.startswith(CONTROL_PREFIX):
                emu._handle_control(self, method, parts.path[len(CONTROL_PREFIX):].rstrip("/"), body)
            else:
                self.send_raw(404, [("Content-Type", "text/html; charset=utf-8")],
                              b"<html><body><h1>404 Not Found</h1></body></html>")
        except _DropConnection:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def send_raw(self, status: int, headers, body) -> None:
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        if isinstance(body, (bytes, bytearray)):
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD" and body:
                self.wfile.write(body)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for chunk in body:
            if chunk:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")

    def send_json(self, status: int, value) -> None:
        self.send_raw(status, [("Content-Type", "application/json")], json.dumps(value).encode())


class EmulatorServer:
    """A Moodle REST web-service emulator on real HTTP.

    >>> with EmulatorServer(scale="demo", seed=42, token="demo-token", port=0) as emu:
    ...     emu.url, emu.token, emu.dataset

    ``tokens`` maps extra tokens to what they may do: a preset name ("admin", "manager",
    "dedicated", "reader", "plain"), a dict of ``TokenSpec`` fields (``{"preset": "dedicated",
    "without": ["moodle/user:viewdetails"], "username": "moodlesync"}``) or a ``TokenSpec``
    (capabilities, site admin, service functions, token/account state). By default ``token`` is
    admin and ``token + "-manager"`` / ``token + "-reader"`` exist too. ``set_token`` changes or
    adds one while running; ``set_site`` sets ``hiddenuserfields`` and maintenance mode.
    """

    def __init__(self, scale: str = "demo", seed: int = 42, token: str = "demo-token", host: str = "127.0.0.1",
                 port: int = 0, exception_style: str = "4.5", debug: bool = False, workers: int | None = None,
                 simulate_cost: bool = False, cost_scale: float = 1.0, dataset: Dataset | None = None,
                 tokens: dict | None = None, rate_limit_rps: float | None = None, price_type: str = "number"):
        if exception_style not in errors.STYLES:
            raise ValueError(f"exception_style must be one of {errors.STYLES}")
        if workers is not None and workers < 1:
            raise ValueError("workers must be >= 1 or None (unlimited)")
        self.scale = scale if dataset is None else dataset.name
        self.seed = seed
        self.token = token
        self.host = host
        self._port = port
        self.exception_style = exception_style
        self.debug = debug
        self.workers = workers
        self.simulate_cost = simulate_cost
        self.cost_scale = cost_scale
        self.price_type = price_type
        self._dataset = dataset
        if tokens is None:
            tokens = {token: "admin", token + "-manager": "manager", token + "-reader": "reader"}
        else:
            tokens = {token: "admin", **tokens}
        self.tokens: dict[str, TokenSpec] = {}
        for t, value in tokens.items():
            try:
                self.tokens[t] = as_spec(value)
            except (TypeError, ValueError) as e:
                raise ValueError(f"token {t!r}: {e}") from None
        self.hidden_user_fields: frozenset[str] = frozenset()
        self.maintenance = False
        self.counters = Counters()
        self.faults = FaultState()
        if rate_limit_rps:
            self.faults.replace(FaultConfig.from_json({"rate_limit": {"rps": rate_limit_rps}}))
        self._slots = threading.BoundedSemaphore(workers) if workers else None
        self._tls_obj = threading.local()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle
    @property
    def dataset(self) -> Dataset:
        if self._dataset is None:
            from .generator import build_dataset
            self._dataset = build_dataset(self.scale, self.seed, price_type=self.price_type)
        return self._dataset

    @property
    def port(self) -> int:
        return self._httpd.server_address[1] if self._httpd else self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def rest_url(self) -> str:
        return self.url + REST_PATH

    def start(self) -> "EmulatorServer":
        if self._httpd is not None:
            return self
        _ = self.dataset
        for spec in self.tokens.values():
            self._account(spec)
        httpd = _HTTPServer((self.host, self._port), _Handler)
        httpd.emulator = self
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"moodle-emulator:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def serve_forever(self) -> None:
        """Serve on the calling thread (used by the CLI)."""
        _ = self.dataset
        for spec in self.tokens.values():
            self._account(spec)
        httpd = _HTTPServer((self.host, self._port), _Handler)
        httpd.emulator = self
        self._httpd = httpd
        try:
            httpd.serve_forever(poll_interval=0.2)
        finally:
            httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "EmulatorServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------ in-process conveniences
    def set_faults(self, config: dict) -> None:
        self.faults.replace(FaultConfig.from_json(config))

    def mutate(self, ops: list) -> list:
        return apply_ops(self.dataset, ops)

    def set_token(self, token: str, spec) -> TokenSpec:
        """Add or change a token (a preset name, a dict of TokenSpec fields or a TokenSpec)."""
        self.tokens[token] = as_spec(spec)
        self._account(self.tokens[token])
        return self.tokens[token]

    def set_site(self, *, hiddenuserfields=None, maintenance=None) -> None:
        """Site settings: $CFG->hiddenuserfields (e.g. ["email", "lastaccess"]) and maintenance mode."""
        if hiddenuserfields is not None:
            self.hidden_user_fields = frozenset(hiddenuserfields)
        if maintenance is not None:
            self.maintenance = bool(maintenance)

    def _account(self, spec: TokenSpec) -> int:
        """The token's account id; an account the dataset lacks is created (auth webservice)."""
        if spec.username is None:
            return self.dataset.site.admin_id
        ds = self.dataset
        with ds.lock:
            uid = ds.users.by_username(spec.username)
            if uid is None:
                uid = ds.users.add(spec.username, "Moodle", spec.username, f"{spec.username}@example.invalid",
                                   auth="webservice")
                ds.touch()
        return uid

    # ------------------------------------------------------------ web service
    def _handle_ws(self, h: _Handler, method: str, query: str, body: bytes) -> None:
        get = parse_php_query(query)
        ctype = (h.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        post = parse_php_query(body) if method == "POST" and ctype in ("application/x-www-form-urlencoded", "") else {}
        merged = merge_get_post(get, post)
        wsfunction = merged.get("wsfunction")
        wsfunction = wsfunction if isinstance(wsfunction, str) else None
        token = merged.get("wstoken")
        token = token if isinstance(token, str) else ""
        fname = wsfunction or "(none)"
        c = self.counters
        c.begin(fname)
        try:
            if self._proxy_layer(h, token, wsfunction, merged):
                return
            entry = self._tls().entry
            cfg = self.faults.config
            if cfg.latency_ms > 0:
                time.sleep(cfg.latency_ms / 1000.0)
            if self._slots is not None:
                self._slots.acquire()
            c.activate(1)
            try:
                status, headers, payload, charged = self._moodle(merged, wsfunction, token, cfg, h.client_address[0])
                c.charge(fname, charged)
                if self.simulate_cost and charged > 0:
                    time.sleep(charged * self.cost_scale / 1000.0)
            finally:
                c.activate(-1)
                if self._slots is not None:
                    self._slots.release()
            if entry is not None:
                full = payload if isinstance(payload, bytes) else b"".join(payload)
                cut = full[: max(1, len(full) // 2)] if len(full) > 1 else b"["
                c.status(200, "truncated_json")
                h.send_raw(200, headers, cut)
                return
            c.status(status)
            h.send_raw(status, headers, payload)
        finally:
            c.end()

    def _proxy_layer(self, h: _Handler, token: str, wsfunction: str | None, merged: dict) -> bool:
        """Faults injected in front of Moodle. Returns True when the request was answered."""
        c = self.counters
        self._tls().entry = None
        rl_hit = self.faults.rate_limit_wait(token)
        if rl_hit is not None:
            wait, rl = rl_hit
            if rl.style == "moodle_payload":
                self._send_moodle_error(h, errors.rate_limited(max(1, int(-(-wait // 1)))), merged, "rate_limit")
            else:
                headers = [("Content-Type", "text/html")]
                ra = retry_after_header(wait, rl.retry_after)
                if ra is not None:
                    headers.append(("Retry-After", ra))
                c.status(429, "rate_limit")
                h.send_raw(429, headers, _PROXY_PAGE.format(code=429, reason=_REASONS[429]).encode())
            return True
        entry = self.faults.next_script_fault(wsfunction)
        if entry is None:
            return False
        kind = entry.fault
        if kind == "truncated_json":
            self._tls().entry = entry
            return False
        if kind == "drop_connection":
            c.status("dropped", kind)
            raise _DropConnection()
        if kind == "ratelimit_payload":
            ra = None if entry.retry_after is None else int(-(-entry.retry_after // 1))
            self._send_moodle_error(h, errors.rate_limited(ra), merged, kind)
            return True
        if kind == "html_error":
            status = entry.status or 200
            c.status(status, kind)
            h.send_raw(status, [("Content-Type", "text/html; charset=utf-8")], _HTML_ERROR_PAGE.encode())
            return True
        code = int(kind.split("_")[1])
        headers = [("Content-Type", "text/html")]
        if entry.retry_after is not None:
            ra = retry_after_header(entry.retry_after, entry.retry_after_format)
            if ra is not None:
                headers.append(("Retry-After", ra))
        c.status(code, kind)
        h.send_raw(code, headers, _PROXY_PAGE.format(code=code, reason=_REASONS[code]).encode())
        return True

    def _tls(self):
        return self._tls_obj

    def _send_moodle_error(self, h: _Handler, err: WebServiceException, merged: dict, fault: str) -> None:
        body = err.body(self.exception_style, self.debug)
        if merged.get("moodlewsrestformat") == "json":
            h.send_raw(200, JSON_HEADERS, php_json_bytes(body))
        else:
            h.send_raw(200, XML_HEADERS, xml_error(body))
        self.counters.status(200, fault)

    def _authenticate(self, token: str, wsfunction: str | None, client_ip: str) -> tuple[TokenSpec, int]:
        """The web-service server's checks before any function runs, in Moodle's order: the token
        (unknown; expired, which deletes it), its IP restriction, the account (suspended, nologin),
        maintenance mode, webservice/rest:use, then whether the service allows the function."""
        spec = self.tokens.get(token)
        if spec is None:
            raise errors.invalid_token()
        if spec.state == EXPIRED:
            del self.tokens[token]  # Moodle deletes the expired token: the next call is invalidtoken
            raise errors.token_expired()
        if spec.state == IP_RESTRICTED:
            raise errors.ip_not_allowed(client_ip)
        uid = self._account(spec)
        if spec.state in (SUSPENDED, NOLOGIN):
            raise errors.user_refused(spec.state, self.dataset.users.username[uid - 1])
        if self.maintenance and not spec.site_admin:
            raise errors.site_maintenance()
        if not spec.can(REST_USE):
            raise errors.no_rest_use()
        if wsfunction and spec.state in (SERVICE_DISABLED, AUTHORISED_USERS, REQUIRED_CAPABILITY):
            raise errors.function_not_allowed(wsfunction)
        if wsfunction and wsfunction in FUNCTIONS and wsfunction not in (spec.functions or SERVICE_FUNCTIONS):
            raise errors.function_not_allowed(wsfunction)
        return spec, uid

    def _moodle(self, merged: dict, wsfunction: str | None, token: str, cfg: FaultConfig, client_ip: str = "127.0.0.1"):
        """What Moodle itself answers: (status, headers, body bytes or chunk iterator, charged ms)."""
        if cfg.webservices_disabled:
            return 403, [("Content-type", "text/html; charset=utf-8")], b"", costmodel.DISABLED_MS
        as_json = merged.get("moodlewsrestformat") == "json"
        try:
            tspec, uid = self._authenticate(token, wsfunction, client_ip)
            if not wsfunction:
                raise errors.invalid_parameter("Missing function name")
            spec = FUNCTIONS.get(wsfunction)
            if spec is None:
                if wsfunction in OTHER_KNOWN_FUNCTIONS:
                    raise errors.function_not_allowed(wsfunction)
                raise errors.unknown_function(wsfunction)
            desc, handler = spec
            args = {k: v for k, v in merged.items() if k not in RESERVED}
            validated = validate(desc, args)
            ctx = Ctx(self.dataset, self.url, tspec, cfg.empty_lists, uid, self.hidden_user_fields)
            ds = self.dataset
            with ds.lock:
                result, (rows, fields) = handler(ctx, validated)
            if wsfunction == "core_webservice_get_site_info" and self.exception_style in STYLE_RELEASES \
                    and ds.site.release.startswith("5."):
                result["release"], result["version"] = STYLE_RELEASES[self.exception_style]
                for f in result["functions"]:
                    f["version"] = result["version"]
            charged = costmodel.charge(wsfunction, rows, fields)
        except WebServiceException as e:
            body = e.body(self.exception_style, self.debug)
            if as_json:
                return 200, JSON_HEADERS, php_json_bytes(body), costmodel.OVERHEAD_MS
            return 200, XML_HEADERS, xml_error(body), costmodel.OVERHEAD_MS
        if not as_json:
            hint = {"__keys__": SITE_INFO_XML_KEYS} if wsfunction == "core_webservice_get_site_info" else None
            return 200, XML_HEADERS, xml_response(result, hint), charged
        if is_large(result):
            return 200, JSON_HEADERS, iter_php_json(result), charged
        return 200, JSON_HEADERS, php_json_bytes(result), charged

    # ------------------------------------------------------------ control API
    def _handle_control(self, h: _Handler, method: str, path: str, body: bytes) -> None:
        def read_json():
            if not body:
                return {}
            try:
                return json.loads(body)
            except ValueError:
                raise _BadRequest("body must be JSON") from None

        try:
            if path == "counters" and method == "GET":
                return h.send_json(200, self.counters.snapshot())
            if path == "counters/reset" and method == "POST":
                self.counters.reset()
                return h.send_json(200, {"ok": True})
            if path == "dataset" and method == "GET":
                with self.dataset.lock:
                    return h.send_json(200, self.dataset.summary())
            if path == "faults" and method == "GET":
                return h.send_json(200, self.faults.config.to_json())
            if path == "faults" and method == "POST":
                try:
                    cfg = FaultConfig.from_json(read_json())
                except FaultConfigError as e:
                    raise _BadRequest(str(e)) from None
                self.faults.replace(cfg)
                return h.send_json(200, {"ok": True, "faults": cfg.to_json()})
            if path == "mutate" and method == "POST":
                data = read_json()
                if not isinstance(data, dict) or "ops" not in data:
                    raise _BadRequest('body must be {"ops": [...]}')
                try:
                    results = apply_ops(self.dataset, data["ops"])
                except MutationError as e:
                    raise _BadRequest(str(e)) from None
                return h.send_json(200, {"ok": True, "applied": len(results), "results": results})
            if path == "tokens" and method == "POST":
                data = read_json()
                if not isinstance(data, dict) or not isinstance(data.get("token"), str):
                    raise _BadRequest('body must be {"token": "...", "spec": "reader" | {...}}')
                try:
                    spec = self.set_token(data["token"], data.get("spec", "admin"))
                except (TypeError, ValueError) as e:
                    raise _BadRequest(str(e)) from None
                return h.send_json(200, {"ok": True, "site_admin": spec.site_admin,
                                         "capabilities": sorted(spec.capabilities), "state": spec.state})
            if path == "site" and method == "POST":
                data = read_json()
                if not isinstance(data, dict) or set(data) - {"hiddenuserfields", "maintenance"}:
                    raise _BadRequest('body must be {"hiddenuserfields": [...], "maintenance": bool}')
                self.set_site(**data)
                return h.send_json(200, {"ok": True, "hiddenuserfields": sorted(self.hidden_user_fields),
                                         "maintenance": self.maintenance})
            if path == "health" and method == "GET":
                return h.send_json(200, {"ok": True, "dataset": self.dataset.name, "url": self.url})
            h.send_json(404, {"error": f"unknown control endpoint {method} /__emulator__/{path}",
                              "endpoints": ["GET counters", "POST counters/reset", "GET dataset", "GET faults",
                                            "POST faults", "POST mutate", "POST tokens", "POST site",
                                            "GET health"]})
        except _BadRequest as e:
            h.send_json(400, {"ok": False, "error": str(e)})


class _BadRequest(Exception):
    pass
