"""Typed Moodle errors and the classification of an HTTP answer into one of them.

Moodle reports its own errors as HTTP 200 with ``{"exception", "errorcode", "message"
[, "debuginfo"]}``; proxies in front of it answer 429/5xx with HTML; a site with web
services switched off answers 403 with an empty body. ``classify_response`` turns any of these
into the right ``MoodleError`` subclass so that callers (and run logs) can tell *what* went
wrong and *what to do*.

Re-exported from ``resources.moodle``; import from there.

Token safety: nothing in this module ever sees the token. Every text that comes from outside
(server messages, HTTP library exception texts) passes through ``scrub`` before it is stored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

# `wstoken=...` (query string or form body), `token=...` (pluginfile URLs) and
# `Authorization: Bearer ...`-like fragments. Applied to every foreign text we keep.
_TOKEN_PATTERNS = [
    re.compile(r"(?i)(\bws)?token=[^&\s'\"<>)]*"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
]


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove token-looking fragments (and the given literal secrets) from ``text``."""
    for secret in secrets:
        # Very short "secrets" (a test token "t") would shred ordinary words; they are also
        # not secrets anyone could guess from a log. Real Moodle tokens are 32 hex chars.
        if secret and len(secret) >= 6:
            text = text.replace(secret, "***")
    text = _TOKEN_PATTERNS[0].sub(lambda m: (m.group(0).split("=", 1)[0]) + "=***", text)
    text = _TOKEN_PATTERNS[1].sub(lambda m: m.group(1) + "***", text)
    return text


class MoodleError(Exception):
    """Base of every failure of a Moodle call. Safe to log: never contains the token.

    Attributes: ``errorcode`` (Moodle's errorcode, None for non-Moodle failures such as HTTP
    or network errors), ``exception`` (Moodle's exception class, as sent), ``wsfunction``,
    ``status`` (HTTP status or None), ``message`` (Moodle's or our own text, scrubbed),
    ``debuginfo`` (scrubbed, when the site has debugging on), ``hint`` (what to do),
    ``retryable`` (whether the client's retry loop may try again), ``retry_after`` (seconds the
    server asked for, if any) and ``attempts`` (HTTP attempts made, set when the call ends).
    """

    kind = "unknown"
    default_hint = "see the Moodle site's logs; if it persists, report it with the function name and errorcode"
    retryable_default = False

    def __init__(
        self,
        message: str,
        *,
        wsfunction: str | None = None,
        errorcode: str | None = None,
        exception: str | None = None,
        status: int | None = None,
        debuginfo: str | None = None,
        hint: str | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.message = message
        self.wsfunction = wsfunction
        self.errorcode = errorcode
        self.exception = exception
        self.status = status
        self.debuginfo = debuginfo
        self.hint = hint or self.default_hint
        self.retryable = self.retryable_default if retryable is None else retryable
        self.retry_after = retry_after
        self.attempts = 1
        super().__init__(self._render())

    def _render(self) -> str:
        where = f"Moodle {self.wsfunction}" if self.wsfunction else "Moodle"
        code = []
        if self.errorcode:
            code.append(f"errorcode={self.errorcode}")
        if self.exception:
            code.append(f"exception={self.exception}")
        if self.status is not None and self.status != 200:
            code.append(f"HTTP {self.status}")
        tail = f" [{', '.join(code)}]" if code else ""
        attempts = f" (gave up after {self.attempts} attempts)" if self.attempts > 1 else ""
        return f"{where}: {self.message}{tail}{attempts} — {self.hint}"

    def _set_attempts(self, attempts: int) -> None:
        self.attempts = attempts
        self.args = (self._render(),)

    def __str__(self) -> str:
        return self._render()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._render()!r})"

    def __reduce__(self):  # picklable across processes (multiprocessing, Dagster step workers)
        state = dict(self.__dict__)
        return (_rebuild, (type(self), state))


def _rebuild(cls: type[MoodleError], state: dict[str, Any]) -> MoodleError:
    err = cls.__new__(cls)
    err.__dict__.update(state)
    Exception.__init__(err, err._render())
    return err


class MoodleAuthenticationError(MoodleError):
    """The token is missing, unknown, expired, or its user may not use web services."""

    kind = "authentication"
    default_hint = (
        "check MOODLE_TOKEN: it must be a current web-service token (Site administration > Server > "
        "Web services > Manage tokens) whose user is active and not suspended"
    )


class MoodleAccountStateError(MoodleAuthenticationError):
    """The token is valid but its Moodle account cannot open the site: it must change its password,
    its profile is incomplete, or it has not agreed to the site policy. Site info still works for
    such an account; most other calls fail, and ``core_course_get_categories`` silently returns []."""

    kind = "account_state"
    default_hint = (
        "fix the token's Moodle account (docs/moodle-setup.md step 3): untick 'Force password change', fill in "
        "first name, last name and email (and any required profile field), and agree to the site policy for it"
    )


class MoodleAccessError(MoodleError):
    """The token is valid but may not do this (function not in the service, capability, context)."""

    kind = "access"
    default_hint = (
        "add the function to the token's external service (Site administration > Server > Web services > "
        "External services > Functions) and give the token's user the capabilities it needs"
    )


class MoodleInvalidParameterError(MoodleError):
    """Moodle rejected the parameters (missing, extra, wrongly typed, or an unknown criterion)."""

    kind = "invalid_parameter"
    default_hint = (
        "the call's parameters do not match this Moodle version's function signature; this is a bug in the caller"
    )


class MoodleMissingRecordError(MoodleError):
    """A record (course, user…) does not exist — or, for every call, the function name is unknown."""

    kind = "missing_record"
    default_hint = (
        "the requested record does not exist on the site (deleted meanwhile?); if every call fails like this, "
        "the function name is unknown to this Moodle version"
    )


class MoodleWebServicesDisabledError(MoodleError):
    """HTTP 403 with an empty body: web services or the REST protocol are switched off."""

    kind = "webservices_disabled"
    default_hint = (
        "enable web services (Site administration > Advanced features > Enable web services) and the REST "
        "protocol (Site administration > Server > Web services > Manage protocols), and check MOODLE_URL"
    )


class MoodleSiteUrlError(MoodleError):
    """The address answers, but not as Moodle's REST endpoint: a redirect, a 404, a login page,
    XML instead of JSON. Permanent: the configured URL is wrong."""

    kind = "site_url"
    default_hint = (
        "set MOODLE_URL to the site's own address exactly as in Moodle's config.php ($CFG->wwwroot): same "
        "http/https, same host name, same path, no /login/... and no /webservice/rest/server.php"
    )


class MoodleNetworkError(MoodleError):
    """A network failure that retrying cannot fix: unknown host, TLS handshake failure, a
    connection refused where the other scheme answers. Never retried."""

    kind = "network"
    default_hint = "check MOODLE_URL (scheme, host name and port)"


class MoodleRateLimitedError(MoodleError):
    """HTTP 429 or a rate-limit payload: the site (or its proxy) wants fewer requests."""

    kind = "rate_limited"
    default_hint = (
        "the site or its proxy is rate-limiting: lower MOODLE_RATE_LIMIT_REQUESTS_PER_SECOND, or raise "
        "MOODLE_RATE_LIMIT_MAX_RETRIES / MOODLE_RATE_LIMIT_MAX_DELAY_MS"
    )
    retryable_default = True


class MoodleTransientError(MoodleError):
    """A failure that may go away: 5xx, dropped connection, truncated or non-JSON body."""

    kind = "transient"
    default_hint = "the site or its proxy failed temporarily; the sync can be re-run later"
    retryable_default = True


class MoodleUnknownError(MoodleError):
    """Anything not recognised above (unknown errorcode, unexpected HTTP status or body)."""

    kind = "unknown"


class MoodleUnexpectedWarningsError(MoodleError):
    """The call succeeded but returned ``warnings`` the caller did not expect.

    Example: ``core_user_get_users`` with an unknown criteria key returns *all* users plus a
    warning ``invalidfieldparameter`` — a sync must not take that for the answer it asked for.
    """

    kind = "unexpected_warnings"
    default_hint = "the call was answered but Moodle ignored part of the request; fix the parameters"

    def __init__(self, message: str, *, warnings: list[dict[str, Any]] | None = None, **kwargs: Any) -> None:
        self.warnings = warnings or []
        super().__init__(message, **kwargs)


# --- classification ------------------------------------------------------------------

ENDPOINT_PATH = "/webservice/rest/server.php"

DEFAULT_RATELIMIT_ERRORCODE_PATTERN = r"(?i)(rate.?limit|too.?many.?requests|throttl|requestlimit)"
DEFAULT_RATELIMIT_MESSAGE_PATTERN = r"(?i)(rate.?limit|too many requests|throttl)"

_AUTH_CODES = {
    "invalidtoken",
    "wsaccessuserdeleted",
    "wsaccessuserunconfirmed",
    "wsaccessusersuspended",
    "wsaccessusernologin",
    "wsaccessuserexpired",
    "invalidlogin",
}
# The account behind the token cannot open the site (checked by require_login in each call).
_ACCOUNT_STATE_CODES = {"forcepasswordchangenotice", "usernotfullysetup", "sitepolicynotagreed"}
# How those states appear inside another error's message (errorcoursecontextnotvalid wraps them).
_ACCOUNT_STATE_TEXT = re.compile(r"(?i)forcepasswordchangenotice|not fully set-?up|site policy|sitepolicynotagreed")
_HTML_TAG = re.compile(r"<[^>]{0,500}>")
_ACCESS_CODES = {
    "nopermissions",
    "errorcoursecontextnotvalid",
    "restrictedcontextexception",
    "requireloginerror",
    "coursehidden",
    "notenrolled",
    "nopermission",
    "accessdenied",
}
_PARAM_CODES = {"invalidparameter", "criteriaerror", "invaliduserfield", "codingerror", "invalidfieldparameter"}
_TOKEN_EXPIRY = re.compile(r"(?i)token.{0,20}(expired|validuntil)|invalid token")


def short_class(exception: str | None) -> str:
    """``core\\exception\\moodle_exception`` and ``moodle_exception`` both → ``moodle_exception``."""
    if not exception:
        return ""
    return exception.replace("/", "\\").rsplit("\\", 1)[-1]


def error_from_payload(
    payload: Mapping[str, Any],
    wsfunction: str | None,
    *,
    ratelimit_errorcode: re.Pattern[str] | None = None,
    ratelimit_message: re.Pattern[str] | None = None,
    secrets: Iterable[str] = (),
) -> MoodleError:
    """Build the typed error for a Moodle error body ``{exception, errorcode, message[, debuginfo]}``."""
    exception = payload.get("exception")
    exception = str(exception) if exception is not None else None
    errorcode = payload.get("errorcode")
    errorcode = str(errorcode) if errorcode is not None else None
    # Some messages carry HTML (sitepolicynotagreed has a link): keep the words.
    message = scrub(_HTML_TAG.sub("", str(payload.get("message") or "")), secrets).strip() or "(no message)"
    debuginfo = payload.get("debuginfo")
    debuginfo = scrub(str(debuginfo), secrets) if debuginfo is not None else None
    cls_name = short_class(exception)
    code = (errorcode or "").lower()
    common: dict[str, Any] = {
        "wsfunction": wsfunction,
        "errorcode": errorcode,
        "exception": exception,
        "status": 200,
        "debuginfo": debuginfo,
    }

    rl_code = ratelimit_errorcode or re.compile(DEFAULT_RATELIMIT_ERRORCODE_PATTERN)
    rl_msg = ratelimit_message or re.compile(DEFAULT_RATELIMIT_MESSAGE_PATTERN)
    if (errorcode and rl_code.search(errorcode)) or rl_msg.search(message):
        return MoodleRateLimitedError(f"rate limited by the site: {message}", **common)

    if code in _ACCOUNT_STATE_CODES or (code == "errorcoursecontextnotvalid" and _ACCOUNT_STATE_TEXT.search(message)):
        return MoodleAccountStateError(f"the token's Moodle account cannot open the site: {message}", **common)
    if code in _AUTH_CODES:
        return MoodleAuthenticationError(f"authentication failed: {message}", **common)
    if code == "accessexception" or cls_name == "webservice_access_exception":
        detail = f"{message} {debuginfo or ''}"
        if _TOKEN_EXPIRY.search(detail):
            return MoodleAuthenticationError(f"the token was refused: {message}", **common)
        return MoodleAccessError(
            f"access denied: {message} (Moodle gives this one answer when the function is not in the token's "
            "external service, the service is disabled, the token is IP-restricted or expired, or the token's "
            "user lacks webservice/rest:use)",
            hint="run `moodle-integration check`: it tells these causes apart; or see docs/moodle-setup.md steps 4-7",
            **common,
        )
    if code == "sitemaintenance":
        return MoodleTransientError(
            f"the site is in maintenance mode: {message}",
            hint="wait until the site leaves maintenance mode, then re-run the sync",
            retryable=False,
            **common,
        )
    if code in _ACCESS_CODES or cls_name in {
        "required_capability_exception",
        "restricted_context_exception",
        "require_login_exception",
    }:
        return MoodleAccessError(
            f"access denied: {message}",
            hint="give the token's user the capability / course access this function needs (or enrol it), "
            "or narrow the call to what it can see",
            **common,
        )
    if code in _PARAM_CODES or cls_name in {"invalid_parameter_exception", "coding_exception"}:
        return MoodleInvalidParameterError(f"invalid parameters: {message}", **common)
    if code.startswith("invalidrecord") or code == "invaliduser" or cls_name == "dml_missing_record_exception":
        if "external_functions" in f"{message} {debuginfo or ''}":
            return MoodleMissingRecordError(
                f"unknown web service function: {message}",
                hint="the function does not exist on this Moodle version; check the function name and the "
                "site's release",
                **common,
            )
        return MoodleMissingRecordError(f"record not found: {message}", **common)
    return MoodleUnknownError(f"Moodle reported an error: {message}", **common)


def is_error_payload(data: Any) -> bool:
    return isinstance(data, dict) and "exception" in data and ("errorcode" in data or "message" in data)


def unexpected_warnings(result: Any, allowed: Iterable[str] = ()) -> list[dict[str, Any]]:
    """The ``warnings`` entries of a result whose ``warningcode`` is not in ``allowed``."""
    if not isinstance(result, dict):
        return []
    warnings = result.get("warnings")
    if not isinstance(warnings, list):
        return []
    allowed_set = set(allowed)
    return [w for w in warnings if not (isinstance(w, dict) and w.get("warningcode") in allowed_set)]


def raise_for_warnings(
    result: Any, wsfunction: str | None = None, allowed: Iterable[str] = (), secrets: Iterable[str] = ()
) -> Any:
    """Return ``result`` unchanged, or raise ``MoodleUnexpectedWarningsError`` if it carries
    warnings other than the ``allowed`` warning codes."""
    bad = unexpected_warnings(result, allowed)
    if bad:
        described = "; ".join(
            scrub(f"{w.get('warningcode')}: {w.get('message', '')} (item {w.get('item', '?')})", secrets)
            if isinstance(w, dict)
            else scrub(str(w), secrets)
            for w in bad[:5]
        )
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        first = bad[0] if isinstance(bad[0], dict) else {}
        raise MoodleUnexpectedWarningsError(
            f"Moodle answered with {len(bad)} unexpected warning(s): {described}{more}",
            warnings=bad,
            wsfunction=wsfunction,
            errorcode=first.get("warningcode"),
        )
    return result


def _looks_like_html(body: str, content_type: str) -> bool:
    head = body.lstrip()[:200].lower()
    return "html" in content_type.lower() or head.startswith("<!doctype html") or head.startswith("<html")


def classify_response(
    status: int,
    body: str,
    content_type: str,
    wsfunction: str | None,
    *,
    retry_after: float | None = None,
    ratelimit_errorcode: re.Pattern[str] | None = None,
    ratelimit_message: re.Pattern[str] | None = None,
    secrets: Iterable[str] = (),
    location: str | None = None,
) -> tuple[Any, MoodleError | None]:
    """Decode an HTTP answer: ``(data, None)`` on success, ``(None, error)`` otherwise."""
    stripped = body.strip()
    data: Any = None
    decoded = False
    if stripped:
        try:
            data = json.loads(stripped)
            decoded = True
        except ValueError:
            decoded = False

    if decoded and is_error_payload(data):
        err = error_from_payload(
            data,
            wsfunction,
            ratelimit_errorcode=ratelimit_errorcode,
            ratelimit_message=ratelimit_message,
            secrets=secrets,
        )
        err.status = status
        if isinstance(err, MoodleRateLimitedError):
            err.retry_after = retry_after
        err.args = (err._render(),)
        return None, err

    common: dict[str, Any] = {"wsfunction": wsfunction, "status": status, "retry_after": retry_after}
    if 300 <= status < 400:
        return None, redirect_error(status, location, wsfunction)
    if status == 429:
        return None, MoodleRateLimitedError("HTTP 429 Too Many Requests from the site or its proxy", **common)
    if status in (502, 503, 504):
        return None, MoodleTransientError(f"HTTP {status} from the site or its proxy (gateway/overload)", **common)
    if status == 403 and not stripped:
        return None, MoodleWebServicesDisabledError(
            "HTTP 403 with an empty body: web services or the REST protocol are disabled on the site", **common
        )
    if status >= 500:
        return None, MoodleTransientError(
            f"HTTP {status} server error",
            hint="the Moodle server failed (see its error log); re-run the sync once it is fixed",
            retryable=False,
            **common,
        )
    if status == 401 or status == 403:
        return None, MoodleAccessError(
            f"HTTP {status} from the site or a proxy in front of it (not a Moodle error body)",
            hint="a proxy/WAF or HTTP authentication in front of Moodle refused the request; check MOODLE_URL and "
            "the proxy's rules",
            **common,
        )
    if status == 404:
        return None, MoodleSiteUrlError(
            "HTTP 404: no web service endpoint at this address",
            hint="check MOODLE_URL: it must be the site's base URL as in config.php ($CFG->wwwroot), e.g. "
            "https://lms.example.edu or https://example.edu/moodle (the client appends /webservice/rest/server.php)",
            **common,
        )
    if status == 400 and _PLAIN_HTTP_TO_TLS.search(stripped[:2000]):
        return None, MoodleSiteUrlError(
            "HTTP 400: a plain-HTTP request reached a TLS port",
            hint="MOODLE_URL must start with https:// for this site",
            **common,
        )
    if status != 200:
        return None, MoodleUnknownError(f"unexpected HTTP {status}", **common)

    if decoded:
        return data, None
    if not stripped:
        return None, MoodleTransientError("empty response body (connection cut short?)", **common)
    if _looks_like_html(stripped, content_type):
        if _MOODLE_PAGE.search(stripped[:50000]):
            return None, MoodleSiteUrlError(
                "a web page of the Moodle site (login or front page) came back instead of the web service's JSON",
                hint="MOODLE_URL must be the site's base URL as in config.php ($CFG->wwwroot), without /login/... "
                "or any other page: the request ended on a page instead of /webservice/rest/server.php",
                **common,
            )
        return None, MoodleTransientError(
            "an HTML page came back instead of JSON (proxy error page, login redirect or PHP error)",
            hint="check MOODLE_URL points at the Moodle site itself; if it does, the site or its proxy served an "
            "error page",
            retryable=False,
            **common,
        )
    if stripped.startswith("<"):
        return None, MoodleSiteUrlError(
            "an XML answer came back instead of JSON",
            hint="the request's parameters did not reach Moodle (a redirect drops them) or the site ignored "
            "moodlewsrestformat=json; check MOODLE_URL",
            **common,
        )
    if stripped[0] in '[{"' or stripped[0].isdigit():
        return None, MoodleTransientError("truncated or malformed JSON response (connection cut short?)", **common)
    return None, MoodleUnknownError("the response is neither JSON nor a known error page", **common)


_PLAIN_HTTP_TO_TLS = re.compile(r"(?i)plain HTTP request was sent to HTTPS port|speaking plain HTTP to an SSL")
# Markers of a page rendered by Moodle itself (its JavaScript config, its login form).
_MOODLE_PAGE = re.compile(r'M\.cfg\s*=|(?i:id="login")|(?i:/login/index\.php)')


def redirect_error(status: int, location: str | None, wsfunction: str | None) -> MoodleError:
    """A 3xx from the endpoint. Never followed: a client following it would re-send a POST as a GET without its
    form body (Moodle then sees no token). When Moodle redirects to its own address (a MOODLE_URL
    whose host or scheme differs from ``$CFG->wwwroot``), the hint names the URL to use."""
    target = scrub(location or "")
    shown = target if len(target) <= 200 else target[:200] + "…"
    if target.endswith(ENDPOINT_PATH):
        base = target[: -len(ENDPOINT_PATH)]
        return MoodleSiteUrlError(
            f"HTTP {status}: the site redirects the web service to {shown}",
            hint=f"set MOODLE_URL={base} (the site's own address, $CFG->wwwroot)",
            wsfunction=wsfunction,
            status=status,
        )
    return MoodleSiteUrlError(
        f"HTTP {status}: the address redirects to {shown or '(no Location)'} instead of answering",
        wsfunction=wsfunction,
        status=status,
    )
