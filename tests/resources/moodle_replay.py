"""Helpers for the Moodle client tests: a tiny *real* HTTP server that replays responses
captured from a real Moodle (tests/fixtures/real-moodle) or scripted status/body pairs.

It is not the emulator (that lives in moodle_emulator): it answers exactly what a test
tells it to, so each error body from real Moodle can be replayed over HTTP byte for byte.
"""
from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from fixture_paths import real_moodle_names, real_moodle_path

# A token that looks like a real one (32 hex chars) so "absent from every text" is meaningful.
SECRET_TOKEN = "5ec4e7c0ffee0123456789abcdeffeed"


def assert_token_free(exc: BaseException) -> None:
    """The token is in no text reachable from the exception (message, args, repr, chains)."""
    seen = set()
    node: BaseException | None = exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        for text in (str(node), repr(node), repr(node.args), repr(getattr(node, "__dict__", {}))):
            assert SECRET_TOKEN not in text
            assert "wstoken=5ec" not in text
        node = node.__cause__ or node.__context__


def load_real_fixture(name: str) -> dict:
    """A real Moodle capture; a missing file fails the test (never a skip)."""
    return json.loads(real_moodle_path(name).read_text(encoding="utf-8"))


def real_fixture_names() -> list[str]:
    """Every capture name; raises at collection when the captures are missing."""
    return real_moodle_names()


@dataclass
class Reply:
    status: int = 200
    body: str | bytes = "{}"
    headers: dict[str, str] = field(default_factory=lambda: {"Content-type": "application/json"})
    # "drop": close the socket without answering; "truncate": announce more bytes than sent.
    action: str | None = None
    delay: float = 0.0  # seconds to wait before answering


@dataclass
class Seen:
    method: str
    path: str
    query: list[tuple[str, str]]
    form: list[tuple[str, str]]
    raw_path: str
    t: float = 0.0  # time.time() when the request was read
    headers: dict[str, str] = field(default_factory=dict)  # as sent (names lower-cased)
    body: bytes = b""  # the raw request body
    peer: int = 0  # the client's port: one per connection


DEFAULT_BODY = '{"sitename":"replay"}'


class LocalServer:
    """A threading HTTP server on 127.0.0.1 (a free port), served from a daemon thread inside `with`."""

    def _serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class ReplayServer(LocalServer):
    """Real HTTP server on 127.0.0.1 answering from a queue of replies (then a default)."""

    def __init__(self) -> None:
        self.queue: deque[Reply] = deque()
        self.default = Reply(body=DEFAULT_BODY)
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args):  # keep test output quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with outer.lock:
                    outer.seen.append(
                        Seen(self.command, parts.path, parse_qsl(parts.query, keep_blank_values=True),
                             parse_qsl(raw.decode(), keep_blank_values=True), self.path, time.time(),
                             headers, raw, self.client_address[1])
                    )
                    reply = outer.queue.popleft() if outer.queue else outer.default
                data = reply.body.encode() if isinstance(reply.body, str) else reply.body
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.action == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                if reply.action == "truncate":
                    self.send_header("Content-Length", str(len(data) + 100))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(data)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = _handle
            do_POST = _handle

        self._serve(Handler)
        self.url = f"http://127.0.0.1:{self.port}"

    def push(self, *replies: Reply) -> None:
        with self.lock:
            self.queue.extend(replies)

    def push_fixture(self, name: str, times: int = 1) -> dict:
        fx = load_real_fixture(name)
        headers = {k: v for k, v in fx["headers"].items() if k.lower() in ("content-type", "retry-after")}
        for _ in range(times):
            self.push(Reply(status=fx["status"], body=fx["body_raw"], headers=headers))
        return fx

    def reset(self) -> None:
        """Between tests: no queued replies, nothing seen, the default reply back (a test that
        changes `default` must not leak it into the next one)."""
        with self.lock:
            self.queue.clear()
            self.seen.clear()
            self.default = Reply(body=DEFAULT_BODY)

