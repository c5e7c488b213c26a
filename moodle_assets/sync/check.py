"""`moodle-integration check`: can a full sync run with this URL and token, and will it see everything?

One line per check, each with what was found and, when it fails, the fix (docs/moodle-setup.md):

1. the URL answers, and as Moodle's REST web service (not a login page, a redirect, a 404);
2. web services and the REST protocol are on;
3. the token is valid (and, when Moodle refuses it before any function runs, which of the
   possible reasons it is, as far as a client can tell: onboarding-findings §5);
4. the site's release and version;
5. the token's external service allows every function the sync calls (each missing one named);
6. the token's account can open the site (forced password change, incomplete profile, policy);
7. whether the token's user is a site administrator; when not, each capability the sync relies
   on, each proven by the cheapest call that proves it (onboarding-findings §4).

Exit codes: 0 a full sync can run and sees everything; 1 a sync cannot run (a failed check);
3 it can run but will see less than everything (a warning: rows it cannot see are kept, fields
it is not shown stay as stored). The report never holds the token, nor site info's
``userprivateaccesskey`` (only the fields named in ``TokenIdentity``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from resources.moodle_errors import (
    MoodleAccessError,
    MoodleAccountStateError,
    MoodleAuthenticationError,
    MoodleError,
    MoodleNetworkError,
    MoodleSiteUrlError,
    MoodleTransientError,
    MoodleWebServicesDisabledError,
)

from ..core.clock import utcnow
from .access import (
    ENROLLED_USERS,
    GET_CATEGORIES,
    GET_COURSES,
    SERVICE_FUNCTIONS_PAGE,
    SITE_INFO,
    USERS_BY_FIELD,
    WS_FUNCTIONS,
    TokenIdentity,
    probe_all_groups,
    probe_category_manage,
    probe_guest,
    probe_hidden_categories,
)

OK, FAIL, WARN, NOTE, SKIP = "ok", "fail", "warn", "note", "skip"
_RANK = {NOTE: 0, SKIP: 1, OK: 2, WARN: 3, FAIL: 4}
EXIT_OK, EXIT_FAIL, EXIT_PARTIAL = 0, 1, 3
ROLE_FIX = "allow {cap} in the token user's role, at system level (docs/moodle-setup.md step 4)"

# The capabilities the sync relies on, what each gives it, and whether a sync fails without it
# (FAIL) or runs seeing less (WARN). The order is the guide's.
CAPABILITIES: tuple[tuple[str, str, str], ...] = (
    ("moodle/course:view", "open every course without being enrolled (course dates, visibility, participants)", FAIL),
    ("moodle/course:viewhiddencourses", "see hidden courses and their participants", WARN),
    ("moodle/category:viewhiddencategories", "see hidden categories", WARN),
    ("moodle/course:enrolreview", "list every user and tell active from inactive enrollments", FAIL),
    ("moodle/user:viewdetails", "see every user, not only teachers", WARN),
    ("moodle/user:viewalldetails", "see usernames and ID numbers", WARN),
    ("moodle/site:viewuseridentity", "see users' email addresses", WARN),
    ("moodle/user:viewhiddendetails", "see user fields the site hides (email, suspended, last access)", WARN),
    ("moodle/course:viewhiddenuserfields", "see each course's last access when the site hides it", WARN),
    ("moodle/site:viewfullnames", "see first and last names whatever the full-name format", WARN),
    ("moodle/site:accessallgroups", "see every participant of courses in separate-groups mode", WARN),
    ("moodle/course:update", "see course ID numbers", WARN),
    ("moodle/category:manage", "see whether a category is hidden", WARN),
)
_CAPABILITY = {name: (gives, severity) for name, gives, severity in CAPABILITIES}


@dataclass
class CheckLine:
    key: str
    status: str  # ok, fail, warn, note, skip
    title: str
    detail: str | None = None
    fix: str | None = None


@dataclass
class CheckReport:
    url: str
    lines: list[CheckLine] = field(default_factory=list)
    identity: TokenIdentity | None = None
    checked_at: datetime = field(default_factory=utcnow)

    def add(self, key: str, status: str, title: str, detail: str | None = None, fix: str | None = None) -> None:
        """Add a line; a second finding for the same key joins the first (the worse status wins)."""
        for line in self.lines:
            if line.key == key:
                if _RANK[status] > _RANK[line.status]:
                    line.status, line.fix = status, fix or line.fix
                if detail and detail != line.detail:
                    line.detail = f"{line.detail}; {detail}" if line.detail else detail
                return
        self.lines.append(CheckLine(key, status, title, detail, fix))

    @property
    def exit_code(self) -> int:
        statuses = {line.status for line in self.lines}
        if FAIL in statuses:
            return EXIT_FAIL
        return EXIT_PARTIAL if WARN in statuses else EXIT_OK

    @property
    def verdict(self) -> str:
        return {
            EXIT_OK: "a full sync can run and sees everything",
            EXIT_FAIL: "a sync cannot run: fix the failed checks",
            EXIT_PARTIAL: "a sync can run but will see less than everything: rows it cannot see are kept, fields it "
            "is not shown stay as stored",
        }[self.exit_code]

    def as_dict(self) -> dict[str, Any]:
        identity = self.identity
        return {
            "url": self.url,
            "checked_at": self.checked_at.isoformat(),
            "exit_code": self.exit_code,
            "result": {EXIT_OK: "ok", EXIT_FAIL: "fail", EXIT_PARTIAL: "partial"}[self.exit_code],
            "verdict": self.verdict,
            "token_user": None
            if identity is None
            else {"id": identity.user_id, "username": identity.username, "site_admin": identity.is_site_admin},
            "site": None if identity is None else {"release": identity.release, "version": identity.version},
            "checks": [asdict(line) for line in self.lines],
        }


def config_error_report(url: str, message: str) -> CheckReport:
    """A MOODLE_URL (or MOODLE_TOKEN) that fails validation, as a check line."""
    report = CheckReport(url)
    report.add("url", FAIL, "MOODLE_URL is a site address", message)
    return report


def _same_site(url: str, site_url: str) -> bool:
    return url.rstrip("/").lower() == site_url.rstrip("/").lower()


def run_check(client: Any, url: str) -> CheckReport:
    """Every check, in order; stops at the first one the later ones depend on."""
    report = CheckReport(url)
    identity = _site_info(client, report)
    if identity is None:
        return report
    report.identity = identity
    missing = identity.missing(WS_FUNCTIONS)
    if missing:
        report.add(
            "functions",
            FAIL,
            "The token's service allows the functions the sync calls",
            f"missing: {', '.join(missing)}",
            f"add {'it' if len(missing) == 1 else 'them'}: {SERVICE_FUNCTIONS_PAGE} (docs/moodle-setup.md step 6)",
        )
    else:
        report.add(
            "functions", OK, "The token's service allows the functions the sync calls", f"all {len(WS_FUNCTIONS)}"
        )
    allowed = identity.functions
    guest = _account(client, report, allowed)
    if guest is False:
        return report  # the account cannot open the site: nothing else can be judged
    if identity.is_site_admin:
        report.add(
            "site_admin",
            OK,
            "The token's user is a site administrator: it passes every capability check",
            None,
            None,
        )
        report.add(
            "dedicated_account",
            NOTE,
            "A dedicated account with only the sync's capabilities is safer than an administrator's token",
            "docs/moodle-setup.md §9",
        )
        return report
    report.add(
        "site_admin",
        NOTE,
        "The token's user is not a site administrator: each capability the sync relies on is checked",
    )
    _capabilities(client, report, allowed, guest if isinstance(guest, dict) else None)
    return report


# --- 1-4: the URL, web services, the token, the site -----------------------------------------------


def _site_info(client: Any, report: CheckReport) -> TokenIdentity | None:
    try:
        info = client.webservice_post(SITE_INFO, {})
        identity = TokenIdentity.from_site_info(info)
    except MoodleWebServicesDisabledError as exc:
        report.add("url", OK, "The URL answers as Moodle's web service", "HTTP 403 with an empty body, as Moodle does")
        report.add(
            "webservices",
            FAIL,
            "Web services and the REST protocol are enabled",
            exc.message,
            "Site administration > General > Advanced features > Enable web services, and Server > Web services > "
            "Manage protocols > REST (docs/moodle-setup.md steps 1-2)",
        )
        return None
    except MoodleSiteUrlError as exc:
        report.add("url", FAIL, "The URL answers as Moodle's web service", exc.message, exc.hint)
        return None
    except MoodleNetworkError as exc:
        report.add("url", FAIL, "The URL answers", exc.message, exc.hint)
        return None
    except MoodleTransientError as exc:
        if exc.status is None:  # no HTTP answer at all
            report.add("url", FAIL, "The URL answers", exc.message, exc.hint)
        else:
            report.add("url", OK, "The URL answers as Moodle's web service", f"HTTP {exc.status}")
            report.add("site", FAIL, "The site answers normally", exc.message, exc.hint)
        return None
    except MoodleAuthenticationError as exc:
        _web_services_ok(report)
        fix = (
            "check MOODLE_TOKEN; if it was deleted or expired, create a new token (docs/moodle-setup.md step 7)"
            if exc.errorcode == "invalidtoken"
            else exc.hint
        )
        report.add("token", FAIL, "The token is valid", exc.message, fix)
        return None
    except MoodleAccessError as exc:
        _web_services_ok(report)
        _decode_refusal(client, report, exc)
        return None
    except MoodleError as exc:
        report.add("url", FAIL, "The URL answers as Moodle's web service", exc.message, exc.hint)
        return None
    _web_services_ok(report)
    if identity.site_url and not _same_site(report.url, identity.site_url):
        report.add(
            "site_url",
            NOTE,
            "MOODLE_URL is the site's own address",
            f"the site calls itself {identity.site_url}",
            f"MOODLE_URL={identity.site_url} is safer: another address may be redirected, which loses the request",
        )
    report.add("token", OK, "The token is valid", f"it belongs to {identity.describe()}")
    report.add("site", OK, "The Moodle site", f"release {identity.release}, version {identity.version}")
    return identity


def _web_services_ok(report: CheckReport) -> None:
    report.add("url", OK, "The URL answers as Moodle's web service", report.url)
    report.add("webservices", OK, "Web services and the REST protocol are enabled")


_REFUSAL_FIX = (
    "Moodle gives one answer for all of these; check each (docs/moodle-setup.md steps 4-7): the role grants "
    "webservice/rest:use; the external service is enabled; the token's IP restriction includes this machine's "
    "address as Moodle sees it; 'Authorised users only' lists the user; the service's 'Required capability'; the "
    "token's 'Valid until'. Moodle's debugging (Debug messages: NORMAL) makes the answer name the reason"
)


def _decode_refusal(client: Any, report: CheckReport, first: MoodleAccessError) -> None:
    """Site info answered ``accessexception``: tell the causes apart as far as a client can
    (onboarding-findings §5). Another function that works means site info is not in the service;
    ``invalidtoken`` on the next call means the token had expired (Moodle deletes it)."""
    try:
        client.webservice_post(GET_CATEGORIES, {"criteria": [{"key": "id", "value": 1}], "addsubcategories": 0})
    except MoodleAuthenticationError as exc:
        if exc.errorcode == "invalidtoken":
            report.add(
                "token",
                FAIL,
                "The token is valid",
                "it had expired: Moodle refused it once, then deleted it",
                "create a new token, with a 'Valid until' you will remember or none (docs/moodle-setup.md step 7)",
            )
            return
        report.add("token", FAIL, "The token is valid", exc.message, exc.hint)
        return
    except MoodleError:
        detail = "Moodle refuses this token before any function runs (accessexception)"
        if first.debuginfo:
            detail += f": {first.debuginfo.splitlines()[0].strip()}"
        report.add("token", FAIL, "The token is accepted", detail, _REFUSAL_FIX)
        return
    report.add("token", OK, "The token is valid")
    report.add(
        "functions",
        FAIL,
        "The token's service allows the functions the sync calls",
        f"missing: {SITE_INFO} (the sync reads who the token is with it)",
        f"add it: {SERVICE_FUNCTIONS_PAGE} (docs/moodle-setup.md step 6)",
    )


# --- 6: the account ---------------------------------------------------------------------------------


def _account(client: Any, report: CheckReport, allowed: frozenset[str]) -> dict | bool | None:
    """The guest probe (user details by id 1): an account that cannot open the site fails it with
    the reason; its answer also proves user:viewdetails and the field capabilities. Returns the
    guest row, None (not shown), or False when the account cannot open the site."""
    if USERS_BY_FIELD not in allowed:
        report.add("account", SKIP, "The token's account can open the site", f"{USERS_BY_FIELD} is not in the service")
        return None
    try:
        guest = probe_guest(client)
    except MoodleAccountStateError as exc:
        report.add("account", FAIL, "The token's account can open the site", exc.message, exc.hint)
        return False
    except MoodleError as exc:
        report.add("account", FAIL, "The token's account can open the site", exc.message, exc.hint)
        return False
    report.add("account", OK, "The token's account can open the site")
    return guest


# --- 7: capabilities --------------------------------------------------------------------------------


def _cap(report: CheckReport, capability: str, held: bool | None, detail: str | None = None) -> None:
    gives, severity = _CAPABILITY[capability]
    if held is None:
        report.add(f"capability:{capability}", SKIP, f"{capability}: {gives}", detail or "could not be checked")
    elif held:
        report.add(f"capability:{capability}", OK, f"{capability}: {gives}", detail)
    else:
        report.add(
            f"capability:{capability}", severity, f"{capability}: {gives}", detail, ROLE_FIX.format(cap=capability)
        )


def _probe(report: CheckReport, capability: str, call: Callable[[], Any]) -> Any:
    try:
        return call()
    except MoodleError as exc:
        report.add(f"capability:{capability}", FAIL, f"{capability}: could not be checked", exc.message, exc.hint)
        return None


def _capabilities(client: Any, report: CheckReport, allowed: frozenset[str], guest: dict | None) -> None:
    # Users: the guest probe, already made (guest is no course contact, so it proves viewdetails).
    if USERS_BY_FIELD in allowed:
        _cap(report, "moodle/user:viewdetails", guest is not None, None if guest else "Moodle did not show the guest")
        if guest is not None:
            _cap(report, "moodle/user:viewalldetails", "username" in guest)
            _cap(
                report,
                "moodle/site:viewuseridentity",
                "email" in guest,
                None if "email" in guest else "or email is not in Show user identity (showuseridentity)",
            )
            shown = "suspended" in guest and "lastaccess" in guest
            _cap(
                report,
                "moodle/user:viewhiddendetails",
                shown,
                "hidden user fields are shown (or the site hides none)" if shown else "suspended / last access hidden",
            )
            _cap(report, "moodle/site:viewfullnames", "lastname" in guest)
    # The site-wide user list (site:viewparticipants or course:enrolreview at system level).
    site_list_ok: bool | None = None
    if ENROLLED_USERS in allowed:
        try:
            client.webservice_post(
                ENROLLED_USERS,
                {
                    "courseid": 1,
                    "options": [{"name": "userfields", "value": "id"}, {"name": "limitnumber", "value": 1}],
                },
            )
            site_list_ok = True
        except MoodleAccessError as exc:
            if exc.errorcode != "nopermissions":
                raise
            site_list_ok = False
    # Categories: criteria that only the capability allows.
    hidden_categories = manage = None
    if GET_CATEGORIES in allowed:
        hidden_categories = _probe(
            report, "moodle/category:viewhiddencategories", lambda: probe_hidden_categories(client)
        )
        _cap(report, "moodle/category:viewhiddencategories", hidden_categories)
        manage = _probe(report, "moodle/category:manage", lambda: probe_category_manage(client))
        _cap(report, "moodle/category:manage", manage)
    # Courses: the catalog itself tells hidden courses (coursecount), course:view (public fields
    # only) and course:update (no idnumber).
    course_rows: list[Mapping] = []
    if GET_COURSES in allowed and GET_CATEGORIES in allowed:
        catalog = _probe(report, "moodle/course:viewhiddencourses", lambda: _catalog(client))
        if catalog is not None:
            category_rows, course_rows = catalog
            _course_capabilities(report, category_rows, course_rows, hidden_categories)
    # One course's participants: entering it, enrolreview, the last-access field, and groups.
    _course_probes(client, report, allowed, course_rows, site_list_ok)


def _catalog(client: Any) -> tuple[list[Mapping], list[Mapping]]:
    categories = client.webservice_post(GET_CATEGORIES, {})
    answer = client.webservice_post(GET_COURSES, {})
    courses = answer.get("courses", []) if isinstance(answer, Mapping) else []
    return (
        [c for c in categories if isinstance(c, Mapping)] if isinstance(categories, list) else [],
        [c for c in courses if isinstance(c, Mapping) and c.get("id") != 1],
    )


def _course_capabilities(
    report: CheckReport, category_rows: list[Mapping], course_rows: list[Mapping], hidden_categories: bool | None
) -> None:
    counted = sum(c.get("coursecount") or 0 for c in category_rows if isinstance(c.get("coursecount"), int))
    listed = len(course_rows)
    if any(c.get("visible") == 0 for c in course_rows) or (hidden_categories and listed >= counted):
        _cap(report, "moodle/course:viewhiddencourses", True, f"sees all {listed} courses")
    elif listed < counted:
        _cap(
            report, "moodle/course:viewhiddencourses", False, f"{counted - listed} of {counted} courses are not listed"
        )
    else:
        _cap(report, "moodle/course:viewhiddencourses", None, "the site shows no hidden course to tell by")
    if course_rows:
        entered = all("visible" in c for c in course_rows)
        _cap(report, "moodle/course:view", entered, None if entered else "courses come back with public fields only")
        _cap(report, "moodle/course:update", any("idnumber" in c for c in course_rows))


def _course_probes(
    client: Any, report: CheckReport, allowed: frozenset[str], course_rows: list[Mapping], site_list_ok: bool | None
) -> None:
    if ENROLLED_USERS not in allowed:
        for cap in ("moodle/course:enrolreview", "moodle/site:accessallgroups", "moodle/course:viewhiddenuserfields"):
            _cap(report, cap, None, f"{ENROLLED_USERS} is not in the service")
        return
    # Prefer a hidden course: entering it also needs viewhiddencourses.
    course = next((c for c in course_rows if c.get("visible") == 0), course_rows[0] if course_rows else None)
    if course is None:
        _cap(report, "moodle/course:enrolreview", site_list_ok, "(from the site-wide user list only: no course seen)")
        return
    course_id = int(course["id"])
    try:
        rows = client.webservice_post(
            ENROLLED_USERS,
            {
                "courseid": course_id,
                "options": [
                    {"name": "onlyactive", "value": 1},
                    {"name": "userfields", "value": "id,lastcourseaccess"},
                    {"name": "limitnumber", "value": 1},
                ],
            },
        )
    except MoodleAccessError as exc:
        text = exc.message.lower()
        if exc.errorcode == "errorcoursecontextnotvalid":
            report.add(
                "capability:moodle/course:view",
                FAIL,
                f"moodle/course:view: {_CAPABILITY['moodle/course:view'][0]}",
                f"course {course_id} refused the token ({exc.errorcode})",
                ROLE_FIX.format(cap="moodle/course:view (and moodle/course:viewhiddencourses)"),
            )
            if site_list_ok is False:
                _cap(
                    report, "moodle/course:enrolreview", False, "the site-wide user list is refused (View participants)"
                )
            _cap(report, "moodle/site:accessallgroups", None, f"course {course_id} refused the token")
            return
        if "review course enrolments" in text or "view participants" in text:
            _cap(report, "moodle/course:enrolreview", False, f"course {course_id}: {exc.message}")
        else:
            report.add("capability:moodle/course:enrolreview", FAIL, "a course's participants", exc.message, exc.hint)
        _cap(report, "moodle/site:accessallgroups", _groups(client, report, course_id))
        return
    enrolreview = site_list_ok is not False
    _cap(
        report,
        "moodle/course:enrolreview",
        enrolreview,
        None if enrolreview else "the site-wide user list is refused (View participants)",
    )
    if isinstance(rows, list) and rows and isinstance(rows[0], Mapping):
        _cap(report, "moodle/course:viewhiddenuserfields", "lastcourseaccess" in rows[0])
    _cap(report, "moodle/site:accessallgroups", _groups(client, report, course_id))


def _groups(client: Any, report: CheckReport, course_id: int) -> bool | None:
    return _probe(report, "moodle/site:accessallgroups", lambda: probe_all_groups(client, course_id))
