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


def function_not_allowed(name: str) -> WebServiceException:
    return WebServiceException(
        "webservice_access_exception",
        "accessexception",
        "Access control exception",
        debuginfo=(
            f"Access to the function {name}() is not allowed.\n"
            "There could be multiple reasons for this:\n"
            "1. The service linked to the user token does not contain the function.\n"
            "2. The service is user-restricted and the user is not listed.\n"
            "3. The service is IP-restricted and the user IP is not listed.\n"
            "4. The service is time-restricted and the time has expired.\n"
            "5. The token is time-restricted and the time has expired.\n"
            "6. The service requires a specific capability which the user does not have.\n"
            "7. The function is called with username/password (no user token is sent)\n"
            "and none of the services has the function to allow the user.\n"
            "These settings can be found in Administration > Site administration\n"
            "> Server > Web services > External services and Manage tokens."
        ),
    )


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


def criteria_error() -> WebServiceException:
    return WebServiceException("moodle_exception", "criteriaerror", "Missing permissions to search on a criterion.")


# The HTTP-200 Moodle-shaped rate-limit payload used by the ``ratelimit_payload`` fault and
# the ``moodle_payload`` rate-limit style. Real Moodle core has no rate limiter; hosted sites
# with a throttling plugin answer like this. errorcode is stable: ``ratelimitexceeded``.
def rate_limited(retry_after: int | None) -> WebServiceException:
    msg = "Rate limit exceeded: too many requests, please try again later"
    if retry_after is not None:
        msg += f" (retry after {retry_after} seconds)"
    return WebServiceException("moodle_exception", "ratelimitexceeded", msg)
