"""Secrets of the web process: the signing key, CSRF tokens, signed cookies, secret checks.

- **Signing key**: 32 random bytes in `<data dir>/web_signing.key` (created 0600 on first use,
  so forms and login sessions survive a restart), or `MOODLE_INTEGRATION_WEB_SIGNING_KEY`
  when the data dir is shared or read-only. It only signs; it never grants access by itself.
- **CSRF**: signed double-submit. The browser holds a random nonce in an HttpOnly,
  SameSite=Strict cookie; each form carries HMAC(key, "csrf:" + nonce). A POST is accepted
  only when the form token matches the cookie's nonce, so another site can neither read the
  token nor mint one. A cross-origin `Origin` header is refused as well.
- **Signed values** (flash messages, the login session): `payload.expiry.signature`, HMAC-SHA256,
  compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from pathlib import Path

KEY_FILE_NAME = "web_signing.key"

CSRF_COOKIE = "moodle_csrf"
CSRF_FIELD = "csrf_token"

_lock = threading.Lock()
_cached: dict[str, bytes] = {}


def signing_key(data_dir: Path, configured: str | None = None) -> bytes:
    """The HMAC key: from the configured value (MOODLE_INTEGRATION_WEB_SIGNING_KEY), else the key
    file in the data dir (created if missing)."""
    if configured:
        return hashlib.sha256(b"moodle-web-signing:" + configured.encode()).digest()
    path = Path(data_dir) / KEY_FILE_NAME
    with _lock:
        if str(path) in _cached:
            return _cached[str(path)]
        key = _read_or_create_key(path)
        _cached[str(path)] = key
        return key


def _read_or_create_key(path: Path) -> bytes:
    try:
        data = path.read_bytes()
        if len(data) >= 32:
            return data[:64]
    except FileNotFoundError:
        pass
    key = secrets.token_bytes(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
    except FileExistsError:  # another process created it first: use theirs
        return path.read_bytes()[:64]
    except OSError:
        pass  # read-only data dir: a per-process key (forms expire on restart)
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, purpose: str, message: str) -> str:
    return _b64(hmac.new(key, f"{purpose}:{message}".encode(), hashlib.sha256).digest())


def _same(expected: str, given: str) -> bool:
    """Constant-time equality of a MAC we computed and one from the client, as bytes:
    hmac.compare_digest raises TypeError on str with non-ASCII characters (a 500)."""
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8", "surrogateescape"))


def secrets_equal(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison of a presented secret with the configured one."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape"))


# --- CSRF -------------------------------------------------------------------------------------


def new_csrf_nonce() -> str:
    return secrets.token_urlsafe(24)


def csrf_token_for(key: bytes, nonce: str) -> str:
    return _mac(key, "csrf", nonce)


def csrf_valid(key: bytes, nonce: str | None, token: str | None) -> bool:
    if not nonce or not token:
        return False
    return _same(csrf_token_for(key, nonce), token)


# --- signed values ---------------------------------------------------------------------------


def sign(key: bytes, purpose: str, payload: object, max_age_s: int) -> str:
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    expires = str(int(time.time()) + max_age_s)
    return f"{body}.{expires}.{_mac(key, purpose, body + '.' + expires)}"


def unsign(key: bytes, purpose: str, value: str | None) -> object | None:
    """The payload of a value made by `sign`, or None if it is forged, damaged or expired."""
    if not value or value.count(".") != 2:
        return None
    body, expires, mac = value.split(".")
    if not _same(_mac(key, purpose, body + "." + expires), mac):
        return None
    try:
        if int(expires) < time.time():
            return None
        return json.loads(_unb64(body))
    except (ValueError, TypeError):
        return None
