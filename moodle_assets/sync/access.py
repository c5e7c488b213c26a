"""Who the token is and what it can see: the facts a sync needs before it may call a row "gone".

Moodle answers a token that lacks a capability with well-formed, shorter data and no warning:
hidden categories and courses are left out, participant lists hold only teachers, a course in
separate-groups mode has no participants (docs/notes/onboarding-findings.md §0). So every sync
starts with ``core_webservice_get_site_info`` (who the token is, whether it is a site
administrator, which functions its service allows) and, for a token that is not a site
administrator, the cheapest probe that proves each capability the target's deactivation rule
relies on. A site administrator passes every capability check, so it needs no probe.

The probes (each one request, chosen so that success *proves* the capability):

- hidden categories: ``core_course_get_categories`` with the criterion ``visible=0``, which
  Moodle allows only with ``moodle/category:viewhiddencategories`` (else ``criteriaerror``);
- every user: ``core_user_get_users_by_field`` for the guest account (id 1): it is no course
  contact, so Moodle returns it only with ``moodle/user:viewdetails``;
- every group: ``core_enrol_get_enrolled_users`` in one course with a group the token user is
  not in, which Moodle allows only with ``moodle/site:accessallgroups`` (else ``nopermissions``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from resources.moodle_errors import (
    MoodleAccessError,
    MoodleError,
    MoodleInvalidParameterError,
    MoodleUnknownError,
)

from ..core.targets import SyncTarget

SITE_INFO = "core_webservice_get_site_info"
GET_CATEGORIES = "core_course_get_categories"
GET_COURSES = "core_course_get_courses_by_field"
ENROLLED_USERS = "core_enrol_get_enrolled_users"
USERS_BY_FIELD = "core_user_get_users_by_field"

#: The five functions the sync calls; the external service must allow each (docs/moodle-setup.md §6).
WS_FUNCTIONS = (SITE_INFO, GET_CATEGORIES, GET_COURSES, ENROLLED_USERS, USERS_BY_FIELD)
#: What each target calls.
TARGET_FUNCTIONS: dict[SyncTarget, tuple[str, ...]] = {
    SyncTarget.COURSE_CATALOG: (SITE_INFO, GET_CATEGORIES, GET_COURSES),
    SyncTarget.USER_DIRECTORY: (SITE_INFO, ENROLLED_USERS, USERS_BY_FIELD),
    SyncTarget.ENROLLMENTS: (SITE_INFO, ENROLLED_USERS, USERS_BY_FIELD),
}

GUEST_USER_ID = 1  # $CFG->siteguest: the installer creates the guest account first
NO_SUCH_GROUP = 2147483647  # a group id nobody is in: asking for it needs site:accessallgroups
SERVICE_FUNCTIONS_PAGE = "Site administration > Server > Web services > External services > (the service) > Functions"


@dataclass(frozen=True)
class TokenIdentity:
    """Who the token is, from ``core_webservice_get_site_info`` (never its private access key)."""

    user_id: int
    username: str
    is_site_admin: bool
    site_url: str
    release: str
    version: str
    site_id: int
    functions: frozenset[str]

    @classmethod
    def from_site_info(cls, info: Any) -> TokenIdentity:
        if not isinstance(info, Mapping) or not isinstance(info.get("userid"), int):
            raise MoodleUnknownError(
                f"{SITE_INFO} answered without a user id ({type(info).__name__})",
                wsfunction=SITE_INFO,
                hint="the address answers, but not like Moodle's web service: check MOODLE_URL",
            )
        functions = info.get("functions")
        names = {f.get("name") for f in functions if isinstance(f, Mapping)} if isinstance(functions, list) else set()
        site_id = info.get("siteid")
        return cls(
            user_id=int(info["userid"]),
            username=str(info.get("username") or ""),
            is_site_admin=info.get("userissiteadmin") is True,
            site_url=str(info.get("siteurl") or ""),
            release=str(info.get("release") or ""),
            version=str(info.get("version") or ""),
            site_id=site_id if isinstance(site_id, int) else 1,
            functions=frozenset(n for n in names if isinstance(n, str)),
        )

    def missing(self, needed: Iterable[str]) -> list[str]:
        """The functions of `needed` the token's service does not allow, in `needed`'s order."""
        return [name for name in needed if name not in self.functions]

    def describe(self) -> str:
        admin = "a site administrator" if self.is_site_admin else "not a site administrator"
        return f"{self.username or '?'} (Moodle user id {self.user_id}, {admin})"


def read_identity(client: Any) -> TokenIdentity:
    return TokenIdentity.from_site_info(client.webservice_post(SITE_INFO, {}))


def missing_functions_error(missing: list[str]) -> MoodleAccessError:
    names = ", ".join(missing)
    return MoodleAccessError(
        f"the token's external service does not allow {names}",
        hint=f"add {'it' if len(missing) == 1 else 'them'} to the service: {SERVICE_FUNCTIONS_PAGE} "
        "(docs/moodle-setup.md step 6)",
    )


def require_functions(identity: TokenIdentity, needed: Iterable[str]) -> None:
    """Raise one error naming every function of `needed` the service lacks (none: return)."""
    missing = identity.missing(needed)
    if missing:
        raise missing_functions_error(missing)


# What Moodle's refusals name, and the capability that lifts each (onboarding-findings §1).
_REFUSAL_CAPABILITY = (
    ("review course enrolments", "moodle/course:enrolreview"),
    ("view participants", "moodle/course:enrolreview"),
    ("access all groups", "moodle/site:accessallgroups"),
)


def capability_for(error: MoodleError) -> str:
    """The capability (or fix) a refusal of a course's participant list points at."""
    text = f"{error.message} {error.debuginfo or ''}".lower()
    for phrase, capability in _REFUSAL_CAPABILITY:
        if phrase in text:
            return capability
    if error.errorcode == "errorcoursecontextnotvalid":
        return "moodle/course:view (and moodle/course:viewhiddencourses for hidden courses)"
    return f"errorcode {error.errorcode or error.kind}"


class CoursesRefused(MoodleAccessError):
    """Too many catalog courses refused to show their participants: the token's role lacks a
    capability. Nothing was written."""

    def __init__(self, message: str, **kwargs: Any) -> None:
        kwargs.setdefault("wsfunction", ENROLLED_USERS)
        super().__init__(message, **kwargs)


# --- probes ------------------------------------------------------------------------------------


def probe_hidden_categories(client: Any) -> bool:
    """moodle/category:viewhiddencategories: the criterion ``visible`` is allowed only with it."""
    try:
        client.webservice_post(GET_CATEGORIES, {"criteria": [{"key": "visible", "value": 0}], "addsubcategories": 0})
    except MoodleInvalidParameterError as exc:
        if exc.errorcode == "criteriaerror":
            return False
        raise
    return True


def probe_category_manage(client: Any) -> bool:
    """moodle/category:manage: the criterion ``idnumber`` is allowed only with it."""
    try:
        client.webservice_post(
            GET_CATEGORIES,
            {"criteria": [{"key": "idnumber", "value": "moodle-integration-probe"}], "addsubcategories": 0},
        )
    except MoodleInvalidParameterError as exc:
        if exc.errorcode == "criteriaerror":
            return False
        raise
    return True


def probe_guest(client: Any) -> dict[str, Any] | None:
    """The guest account's row as this token sees it (None: not shown, no moodle/user:viewdetails).

    Its keys prove more: ``username`` needs user:viewalldetails, ``email`` needs
    site:viewuseridentity (the guest does not show its address to everyone)."""
    rows = client.webservice_post(USERS_BY_FIELD, {"field": "id", "values": [str(GUEST_USER_ID)]})
    if isinstance(rows, list):
        for row in rows:
            if isinstance(row, Mapping) and row.get("id") == GUEST_USER_ID:
                return dict(row)
    return None


def probe_all_groups(client: Any, course_id: int) -> bool | None:
    """moodle/site:accessallgroups, asked in `course_id`: True/False, None when the course itself
    refused the token (nothing proven)."""
    try:
        client.webservice_post(
            ENROLLED_USERS,
            {
                "courseid": course_id,
                "options": [
                    {"name": "groupid", "value": NO_SUCH_GROUP},
                    {"name": "userfields", "value": "id"},
                    {"name": "limitnumber", "value": 1},
                ],
            },
        )
    except MoodleAccessError as exc:
        if exc.errorcode == "nopermissions" and "groups" in exc.message.lower():
            return False
        return None
    return True


def probe_site_participants(client: Any) -> list[Any]:
    """The site-wide user list, one row: needs site:viewparticipants or course:enrolreview at
    system level (else nopermissions, raised); ``[]`` without user:viewdetails."""
    rows = client.webservice_post(
        ENROLLED_USERS,
        {"courseid": 1, "options": [{"name": "userfields", "value": "id"}, {"name": "limitnumber", "value": 1}]},
    )
    return rows if isinstance(rows, list) else []


def probe_course_enrolments(client: Any, course_id: int) -> list[Any]:
    """One active participant of a course: needs entering it (course:view, + viewhiddencourses
    if hidden), viewing its participants and course:enrolreview. Errors are raised."""
    rows = client.webservice_post(
        ENROLLED_USERS,
        {
            "courseid": course_id,
            "options": [
                {"name": "onlyactive", "value": 1},
                {"name": "userfields", "value": "id"},
                {"name": "limitnumber", "value": 1},
            ],
        },
    )
    return rows if isinstance(rows, list) else []


# --- what a target may deactivate ---------------------------------------------------------------


@dataclass(frozen=True)
class Visibility:
    """What the token sees, for the deactivation rules; ``None`` = not probed for this target."""

    hidden_categories: bool | None = None
    all_users: bool | None = None
    all_groups: bool | None = None

    @classmethod
    def everything(cls) -> Visibility:
        return cls(True, True, True)


@dataclass(frozen=True)
class TokenAccess:
    """A sync's view of its token: identity (recorded on the run) and visibility (the rules)."""

    identity: TokenIdentity
    visibility: Visibility

    @property
    def user_id(self) -> int:
        return self.identity.user_id


def read_access(client: Any, target: SyncTarget, *, probe_course_ids: Sequence[int] = ()) -> TokenAccess:
    """Site info, the target's functions checked against the service, and the probes the target's
    deactivation rule needs (none for a site administrator). `probe_course_ids`: courses to ask
    the all-groups question in (ENROLLMENTS); the first of up to three that lets the token in
    answers it."""
    identity = read_identity(client)
    require_functions(identity, TARGET_FUNCTIONS[target])
    if identity.is_site_admin:
        return TokenAccess(identity, Visibility.everything())
    if target is SyncTarget.COURSE_CATALOG:
        return TokenAccess(identity, Visibility(hidden_categories=probe_hidden_categories(client)))
    all_users = probe_guest(client) is not None
    if target is SyncTarget.USER_DIRECTORY:
        return TokenAccess(identity, Visibility(all_users=all_users))
    all_groups = None
    for course_id in list(probe_course_ids)[:3]:
        all_groups = probe_all_groups(client, course_id)
        if all_groups is not None:
            break
    return TokenAccess(identity, Visibility(all_users=all_users, all_groups=all_groups))


__all__ = [
    "TARGET_FUNCTIONS",
    "WS_FUNCTIONS",
    "MoodleError",
    "TokenAccess",
    "TokenIdentity",
    "Visibility",
    "read_access",
    "read_identity",
    "require_functions",
]
