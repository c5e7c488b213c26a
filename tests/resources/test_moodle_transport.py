"""The client's HTTP transport (urllib3, one pool per client), on real sockets: the form body is
what requests sent and what the emulator parses back, the headers and the absent cookies, a
compressed answer, ~/.netrc, a real forward proxy from the environment (and NO_PROXY), and the
CA bundle from the environment against a real TLS server with a self-signed certificate."""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import shutil
import socket
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlencode, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from moodle_replay import SECRET_TOKEN, LocalServer, Reply, assert_token_free
from requests.models import RequestEncodingMixin

from moodle_assets.core.validation import ConfigError
from moodle_emulator.params import parse_php_query
from resources.moodle import MoodleNetworkError, MoodleTransientError
from resources.moodle_client import encode_params, form_body

ENDPOINT = "/webservice/rest/server.php"
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture
def clean_env(monkeypatch):
    """No proxy, CA bundle or netrc from the machine running the tests."""
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NETRC"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# --- the form body --------------------------------------------------------------------------------

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(text, text), max_size=8))
def test_the_form_body_is_byte_for_byte_what_requests_sent(fields):
    assert form_body(fields) == RequestEncodingMixin._encode_params(fields) == urlencode(fields)
    assert form_body(fields) == urlencode(fields)  # again: from the quoting cache this time


NESTED = {
    "courseid": 7,
    "options": [
        {"name": "onlyactive", "value": True},
        {"name": "userfields", "value": "id, fullname & email=+%"},
        {"name": "limitfrom", "value": 0.0},
    ],
    "criteria": [{"key": "name", "value": "Ünïcødé 名前 ✓"}],
    "empty": None,
}
# What Moodle (and the emulator) reads back: lists become index-keyed arrays.
PARSED = {
    "courseid": "7",
    "options": {
        "0": {"name": "onlyactive", "value": "1"},
        "1": {"name": "userfields", "value": "id, fullname & email=+%"},
        "2": {"name": "limitfrom", "value": "0"},
    },
    "criteria": {"0": {"key": "name", "value": "Ünïcødé 名前 ✓"}},
    "empty": "",
}


def test_nested_params_arrive_as_the_emulator_parses_them(clean_env, replay, make_client):
    client = make_client(replay.url)
    client.webservice_post("core_enrol_get_enrolled_users", NESTED)
    client.webservice_get("core_enrol_get_enrolled_users", NESTED)
    post, get = replay.seen
    fields = [("wstoken", SECRET_TOKEN), ("wsfunction", "core_enrol_get_enrolled_users"),
              ("moodlewsrestformat", "json"), *encode_params(NESTED)]
    assert post.body == form_body(fields).encode("ascii")  # pre-encoded once, sent as is
    assert parse_php_query(post.body) == {"wstoken": SECRET_TOKEN, "wsfunction": "core_enrol_get_enrolled_users",
                                          "moodlewsrestformat": "json", **PARSED}
    assert post.raw_path == ENDPOINT  # nothing in a POST URL
    assert get.body == b"" and get.raw_path == f"{ENDPOINT}?{form_body(fields)}"
    assert parse_php_query(urlsplit(get.raw_path).query) == parse_php_query(post.body)


# --- headers, cookies, compression ------------------------------------------------------------------


def test_headers_sent_and_cookies_never_kept(clean_env, replay, make_client):
    client = make_client(replay.url)
    replay.push(Reply(200, "{}", {"Content-type": "application/json", "Set-Cookie": "MoodleSession=abc; Path=/"}))
    client.webservice_post("core_webservice_get_site_info")
    client.webservice_post("core_webservice_get_site_info")
    client.webservice_get("core_webservice_get_site_info")
    first, second, get = replay.seen
    for seen in (first, second, get):
        assert seen.headers["accept"] == "application/json"
        assert seen.headers["user-agent"] == "moodle-integration/0.1"
        assert "gzip" in seen.headers["accept-encoding"]
        assert "cookie" not in seen.headers and "authorization" not in seen.headers
    assert first.headers["content-type"] == second.headers["content-type"] == "application/x-www-form-urlencoded"
    assert int(first.headers["content-length"]) == len(first.body)
    assert "content-type" not in get.headers


def test_a_compressed_answer_is_decoded(clean_env, replay, make_client):
    payload = {"sitename": "Zipped ✓", "users": list(range(1000))}
    replay.push(Reply(200, gzip.compress(json.dumps(payload).encode()),
                      {"Content-type": "application/json", "Content-Encoding": "gzip"}))
    assert make_client(replay.url).webservice_post("core_webservice_get_site_info") == payload


def test_a_corrupt_compressed_answer_is_retried_as_a_transport_failure(clean_env, replay, make_client):
    bad = Reply(200, b"not gzip at all", {"Content-type": "application/json", "Content-Encoding": "gzip"})
    replay.push(bad, bad)
    with pytest.raises(MoodleTransientError, match="connection failed or dropped") as info:
        make_client(replay.url, max_retries=1).webservice_post("core_webservice_get_site_info")
    assert info.value.retryable and info.value.attempts == 2
    assert_token_free(info.value)


def test_netrc_credentials_are_sent_as_basic_auth(clean_env, replay, make_client, tmp_path):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1\nlogin gate\npassword s3cret\n")
    netrc.chmod(0o600)
    clean_env.setenv("NETRC", str(netrc))
    make_client(replay.url).webservice_post("core_webservice_get_site_info")
    expected = "Basic " + base64.b64encode(b"gate:s3cret").decode()
    assert replay.seen[0].headers["authorization"] == expected


def test_a_slow_answer_is_a_read_timeout_not_retried(clean_env, replay, make_client):
    replay.push(Reply(200, "{}", delay=1.5))
    client = make_client(replay.url, read_timeout_s=0.3, max_retries=3)
    with pytest.raises(MoodleTransientError, match=r"no answer within 0\.3 s") as info:
        client.webservice_post("core_enrol_get_enrolled_users", {"courseid": 2})
    assert not info.value.retryable and info.value.attempts == 1 and len(replay.seen) == 1
    assert "MOODLE_HTTP_READ_TIMEOUT_S" in info.value.hint
    assert_token_free(info.value)


def test_the_pool_holds_at_most_pool_size_connections_and_threads_wait_for_one(clean_env, replay, make_client):
    client = make_client(replay.url, pool_size=2)
    replay.push(*[Reply(200, "{}", delay=0.2) for _ in range(6)])
    threads = [threading.Thread(target=client.webservice_post, args=("core_webservice_get_site_info",))
               for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(replay.seen) == 6
    assert len({seen.peer for seen in replay.seen}) == 2  # 6 calls over 2 reused connections


# --- a real forward proxy from the environment --------------------------------------------------------


class ForwardProxy(LocalServer):
    """A plain-HTTP forward proxy: takes absolute-URI requests, forwards them, relays the answer."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str | None]] = []  # (method, absolute URI, Proxy-Authorization)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _forward(self):
                outer.seen.append((self.command, self.path, self.headers.get("Proxy-Authorization")))
                target = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-authorization", "host")}
                upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
                try:
                    path = target.path + (f"?{target.query}" if target.query else "")
                    upstream.request(self.command, path, body=body, headers=headers)
                    answer = upstream.getresponse()
                    data = answer.read()
                    self.send_response(answer.status)
                    for k, v in answer.getheaders():
                        if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    upstream.close()

            do_GET = _forward
            do_POST = _forward

            def do_CONNECT(self):  # an https:// site: a byte tunnel, TLS end to end
                outer.seen.append(("CONNECT", self.path, self.headers.get("Proxy-Authorization")))
                host, port = self.path.rsplit(":", 1)
                upstream = socket.create_connection((host, int(port)), timeout=10)
                self.send_response(200, "Connection established")
                self.end_headers()
                self.wfile.flush()

                def pipe(src, dst):
                    try:
                        while chunk := src.recv(65536):
                            dst.sendall(chunk)
                    except OSError:
                        pass
                    finally:
                        for sock in (src, dst):
                            try:
                                sock.shutdown(socket.SHUT_RDWR)
                            except OSError:
                                pass

                back = threading.Thread(target=pipe, args=(upstream, self.connection), daemon=True)
                back.start()
                pipe(self.connection, upstream)
                back.join(10)
                upstream.close()
                self.close_connection = True

        self._serve(Handler)


def test_the_environments_proxy_carries_the_calls(clean_env, replay, make_client):
    with ForwardProxy() as proxy:
        clean_env.setenv("http_proxy", f"http://ops:pr0xy-pass@127.0.0.1:{proxy.port}")
        client = make_client(replay.url)
        assert client.webservice_post("core_webservice_get_site_info") == {"sitename": "replay"}
        client.webservice_get("core_webservice_get_site_info")
    expected_auth = "Basic " + base64.b64encode(b"ops:pr0xy-pass").decode()
    assert [(m, uri.split("?")[0], auth) for m, uri, auth in proxy.seen] == [
        ("POST", replay.url + ENDPOINT, expected_auth),
        ("GET", replay.url + ENDPOINT, expected_auth),
    ]
    assert ("wstoken", SECRET_TOKEN) in replay.seen[0].form  # the body went through the proxy intact
    assert "proxy-authorization" not in replay.seen[0].headers


def test_no_proxy_sends_the_calls_direct(clean_env, replay, make_client):
    with ForwardProxy() as proxy:
        clean_env.setenv("http_proxy", f"http://127.0.0.1:{proxy.port}")
        clean_env.setenv("no_proxy", "127.0.0.1")
        make_client(replay.url).webservice_post("core_webservice_get_site_info")
    assert proxy.seen == [] and len(replay.seen) == 1


def test_a_socks_proxy_is_refused_when_the_client_is_made(clean_env, make_client):
    clean_env.setenv("all_proxy", "socks5://ops:pr0xy-pass@127.0.0.1:1080")
    with pytest.raises(ConfigError, match="SOCKS proxy") as info:
        make_client("https://lms.example.edu")
    assert "pr0xy-pass" not in str(info.value) and "socks5://127.0.0.1:1080" in str(info.value)


def test_a_proxy_url_of_another_scheme_is_refused_when_the_client_is_made(clean_env, make_client):
    clean_env.setenv("https_proxy", "ftp://ops:pr0xy-pass@127.0.0.1:21")
    with pytest.raises(ConfigError, match="not a usable proxy URL") as info:
        make_client("https://lms.example.edu")
    assert "pr0xy-pass" not in str(info.value)


def test_an_unreachable_proxy_is_a_retried_connection_failure_without_its_password(clean_env, replay, make_client):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    clean_env.setenv("http_proxy", f"http://ops:pr0xy-pass@127.0.0.1:{port}")
    with pytest.raises(MoodleTransientError, match="refused") as info:
        make_client(replay.url, max_retries=1).webservice_post("core_webservice_get_site_info")
    assert info.value.retryable and info.value.attempts == 2 and replay.seen == []
    assert "pr0xy-pass" not in str(info.value)
    assert_token_free(info.value)


# --- TLS: the CA bundle from the environment -----------------------------------------------------------


@pytest.fixture(scope="module")
def tls_site(tmp_path_factory):
    """A JSON-answering HTTPS server on 127.0.0.1 with a self-signed certificate (made by openssl)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            data = b'{"sitename": "tls"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{httpd.server_address[1]}", cert
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_the_ca_bundle_from_the_environment_is_trusted(variable, clean_env, tls_site, make_client):
    url, cert = tls_site
    clean_env.setenv(variable, str(cert))
    assert make_client(url).webservice_post("core_webservice_get_site_info") == {"sitename": "tls"}


def test_an_https_site_is_reached_through_the_proxy_tunnel(clean_env, tls_site, make_client):
    url, cert = tls_site
    with ForwardProxy() as proxy:
        clean_env.setenv("https_proxy", f"http://ops:pr0xy-pass@127.0.0.1:{proxy.port}")
        clean_env.setenv("REQUESTS_CA_BUNDLE", str(cert))
        client = make_client(url)
        assert client.webservice_post("core_webservice_get_site_info") == {"sitename": "tls"}
        assert client.webservice_post("core_webservice_get_site_info") == {"sitename": "tls"}
    expected_auth = "Basic " + base64.b64encode(b"ops:pr0xy-pass").decode()
    assert proxy.seen == [("CONNECT", urlsplit(url).netloc, expected_auth)]  # one tunnel, kept alive


def test_without_that_bundle_the_certificate_is_verified_and_refused(clean_env, tls_site, make_client):
    url, _cert = tls_site
    client = make_client(url, max_retries=3)
    with pytest.raises(MoodleNetworkError, match="TLS handshake") as info:
        client.webservice_post("core_webservice_get_site_info")
    assert info.value.attempts == 1 and "REQUESTS_CA_BUNDLE" in info.value.hint
    assert_token_free(info.value)
