"""Moodle error bodies, in both exception naming styles.

Real Moodle (checked on 5.0.6+, see ``tests/fixtures/real-moodle``) namespaces only *some*
exception classes since 4.5 (MDL-81919):

===============================  ===================================================
≤ 4.4 class                      4.5+ class (what ``get_class()`` returns)
===============================  ===================================================
moodle_exception                 core\\exception\\moodle_exception
invalid_parameter_exception      core\\exception\\invalid_parameter_exception
coding_exception                 core\\exception\\coding_exception
required_capability_exception    core\\exception\\required_capability_exception
invalid_response_exception       core\\exception\\invalid_response_exception
dml_missing_record_exception     dml_missing_record_exception          (NOT moved)
webservice_access_exception      webservice_access_exception           (NOT moved)
===============================  ===================================================
"""

from __future__ import annotations

from dataclasses import dataclass

STYLES = ("4.4", "4.5")

_NAMESPACED = {
    "moodle_exception",
    "invalid_parameter_exception",
    "coding_exception",
    "required_capability_exception",
    "invalid_response_exception",
    "require_login_exception",
}


def exception_class(base: str, style: str) -> str:
    """PHP class name of exception ``base`` as Moodle ``style`` ("4.4" or "4.5") reports it."""
    if style not in STYLES:
        raise ValueError(f"exception_style must be one of {STYLES}, not {style!r}")
    if style == "4.5" and base in _NAMESPACED:
        return "core\\exception\\" + base
    return base


@dataclass
class WebServiceException(Exception):
    """An exception raised inside the web-service layer; rendered as HTTP 200 + JSON body.

    ``message`` is the plain (non-debug) message; ``debuginfo`` is only shown in debug
    mode, where the message also gets `` (debuginfo)`` appended, exactly like
    ``moodle_exception::__construct`` does with developer debugging on.
    ``debug_errorcode`` / ``debug_message`` override errorcode / message in debug mode
    (dml errors change ``invalidrecordunknown`` to ``invalidrecord`` and show SQL).
    """

    base_class: str
    errorcode: str
    message: str
    debuginfo: str | None = None
    debug_errorcode: str | None = None
    debug_message: str | None = None

    def body(self, style: str, debug: bool) -> dict:
        out: dict = {"exception": exception_class(self.base_class, style)}
        if debug:
            out["errorcode"] = self.debug_errorcode or self.errorcode
            msg = self.debug_message or self.message
            if self.debuginfo is not None:
                msg = f"{msg} ({self.debuginfo})"
            out["message"] = msg
            if self.debuginfo is not None:
                out["debuginfo"] = self.debuginfo
        else:
            out["errorcode"] = self.errorcode
            out["message"] = self.message
        return out


INVALID_PARAMETER_MESSAGE = "Invalid parameter value detected"


def invalid_parameter(debuginfo: str) -> WebServiceException:
    return WebServiceException("invalid_parameter_exception", "invalidparameter", INVALID_PARAMETER_MESSAGE, debuginfo)


def invalid_token() -> WebServiceException:
    # Real Moodle shows no debuginfo for this one even with debugging on.
    return WebServiceException("moodle_exception", "invalidtoken", "Invalid token - token not found")


def _dml_missing(table: str, sql: str, value) -> WebServiceException:
    if isinstance(value, str):
        shown = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    else:
        shown = str(value)
    debuginfo = f"{sql}\n[array (\n  0 => {shown},\n)]"
    return WebServiceException(
        "dml_missing_record_exception",
        "invalidrecordunknown",
        "Can't find data record in database.",
        debuginfo=debuginfo,
        debug_errorcode="invalidrecord",
        debug_message=f"Can't find data record in database table {table}.",
    )


def unknown_function(name: str) -> WebServiceException:
    return _dml_missing("external_functions", "SELECT * FROM {external_functions} WHERE name = ?", name)


def unknown_course(courseid: int) -> WebServiceException:
    return _dml_missing("course", "SELECT * FROM {course} WHERE id = ?", courseid)


_NOT_ALLOWED_LINES = (
    "There could be multiple reasons for this:",
    "1. The service linked to the user token does not contain the function.",
    "2. The service is user-restricted and the user is not listed.",
    "3. The service is IP-restricted and the user IP is not listed.",
    "4. The service is time-restricted and the time has expired.",
    "5. The token is time-restricted and the time has expired.",
    "6. The service requires a specific capability which the user does not have.",
    "7. The function is called with username/password (no user token is sent)",
    "and none of the services has the function to allow the user.",
    "These settings can be found in Administration > Site administration",
    "> Server > Web services > External services and Manage tokens.",
)


def access_exception(debuginfo: str) -> WebServiceException:
    """Every refusal before the function runs: one body, only ``debuginfo`` tells them apart."""
    return WebServiceException("webservice_access_exception", "accessexception", "Access control exception",
                               debuginfo=debuginfo)


def function_not_allowed(name: str) -> WebServiceException:
    # Moodle 5.0's string keeps the source's indentation (21 spaces) on every line after the first.
    return access_exception(f"Access to the function {name}() is not allowed."
                            + "".join("\n" + " " * 21 + line for line in _NOT_ALLOWED_LINES))


def token_expired() -> WebServiceException:
    return access_exception("Invalid token - token expired - check validuntil time for the token")


def ip_not_allowed(ip: str) -> WebServiceException:
    return access_exception(f"Invalid service - IP:{ip} is not supported - check this allowed user")


def no_rest_use() -> WebServiceException:
    return access_exception("You are not allowed to use the rest protocol (missing capability: webservice/rest:use)")


def user_refused(kind: str, username: str) -> WebServiceException:
    text = {"suspended": "suspended", "nologin": "nologin authentication"}[kind]
    return WebServiceException("moodle_exception", f"wsaccessuser{kind}",
                               f"Refused web service access for {text} username: {username}")


def site_maintenance() -> WebServiceException:
    return WebServiceException("moodle_exception", "sitemaintenance",
                               "The site is undergoing maintenance and is currently not available")


# What require_login() throws for an account that cannot open the site, and how an
# errorcoursecontextnotvalid quotes it.
_ACCOUNT_STATE_ERRORS = {
    "force_password_change": ("forcepasswordchangenotice", "error/forcepasswordchangenotice"),
    "not_fully_set_up": ("usernotfullysetup", "User not fully set-up"),
    "site_policy": ("sitepolicynotagreed", None),
}


def account_state(state: str, site_url: str) -> WebServiceException:
    code, message = _ACCOUNT_STATE_ERRORS[state]
    if message is None:
        message = f'Site policy not agreed: <a href="{site_url}/user/policy.php">Click here to open the site policy.</a>'
    return WebServiceException("moodle_exception", code, message)


def course_context_not_valid(courseid: int, inner: str = "Course or activity not accessible.") -> WebServiceException:
    return WebServiceException(
        "moodle_exception", "errorcoursecontextnotvalid",
        f"You cannot execute functions in the course context (course id:{courseid}). "
        f"The context error message was: {inner}",
    )


def course_context_account_state(courseid: int, state: str, site_url: str) -> WebServiceException:
    return course_context_not_valid(courseid, account_state(state, site_url).message)


def coding_error(debuginfo: str) -> WebServiceException:
    return WebServiceException(
        "coding_exception",
        "codingerror",
        "Coding error detected, it must be fixed by a programmer: " + debuginfo,
        debuginfo=None,
    )


def no_permissions(capability_name: str, capability: str) -> WebServiceException:
    return WebServiceException(
        "required_capability_exception",
        "nopermissions",
        f"Sorry, but you do not currently have permissions to do that ({capability_name}).",
        debuginfo=capability,
    )


def invalid_user_field(field: str) -> WebServiceException:
    return WebServiceException("moodle_exception", "invaliduserfield", f"Invalid user field: {field}")


def key_already_set(key: str) -> WebServiceException:
    return WebServiceException(
        "moodle_exception", "keyalreadyset", "error/keyalreadyset",
        debuginfo=f"The key {key} can only be sent once",
    )


def criteria_error(key: str | None = None) -> WebServiceException:
    return WebServiceException(
        "moodle_exception", "criteriaerror", "Missing permissions to search on a criterion.",
        debuginfo=None if key is None else f'You don\'t have the permissions to search on the "{key}" field.',
    )


# The HTTP-200 Moodle-shaped rate-limit payload used by the ``ratelimit_payload`` fault and
# the ``moodle_payload`` rate-limit style. Real Moodle core has no rate limiter; hosted sites
# with a throttling plugin answer like this. errorcode is stable: ``ratelimitexceeded``.
def rate_limited(retry_after: int | None) -> WebServiceException:
    msg = "Rate limit exceeded: too many requests, please try again later"
    if retry_after is not None:
        msg += f" (retry after {retry_after} seconds)"
    return WebServiceException("moodle_exception", "ratelimitexceeded", msg)
