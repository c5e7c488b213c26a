"""Who a token is and what it may do: capabilities, the service's functions, token and account states.

Real Moodle decides what a web-service call sees from the token's user (its capabilities, held
at system level here, and whether it is a site administrator), from the external service the
token belongs to (its functions, whether it is enabled) and from the token and the account's
state. Each emulator token carries a :class:`TokenSpec` with exactly those facts; the functions
consult it the way Moodle's code does (see docs/notes/onboarding-findings.md of the project).

Presets (``TokenSpec.preset(name)``):

* ``admin``: a site administrator: every capability, every field.
* ``manager``: every capability below, not a site administrator (``userissiteadmin: false``).
* ``dedicated``: the 14 capabilities of the project's set-up guide (docs/moodle-setup.md §4).
* ``reader``: sees users and visible courses (course:view, participants, user details and
  identity, groups), but no hidden rows, no ``course:update``/``category:manage`` fields, no
  ``user:viewalldetails`` fields, no ``course:enrolreview``.
* ``plain``: only ``webservice/rest:use`` (a user with no role besides the one granting it).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

REST_USE = "webservice/rest:use"
COURSE_VIEW = "moodle/course:view"
VIEW_HIDDEN_COURSES = "moodle/course:viewhiddencourses"
VIEW_HIDDEN_CATEGORIES = "moodle/category:viewhiddencategories"
CATEGORY_MANAGE = "moodle/category:manage"
COURSE_UPDATE = "moodle/course:update"
ENROL_REVIEW = "moodle/course:enrolreview"
COURSE_VIEW_PARTICIPANTS = "moodle/course:viewparticipants"
SITE_VIEW_PARTICIPANTS = "moodle/site:viewparticipants"
USER_VIEW_DETAILS = "moodle/user:viewdetails"
USER_VIEW_ALL_DETAILS = "moodle/user:viewalldetails"
VIEW_USER_IDENTITY = "moodle/site:viewuseridentity"
VIEW_HIDDEN_DETAILS = "moodle/user:viewhiddendetails"
VIEW_HIDDEN_USER_FIELDS = "moodle/course:viewhiddenuserfields"
VIEW_FULL_NAMES = "moodle/site:viewfullnames"
ACCESS_ALL_GROUPS = "moodle/site:accessallgroups"

ALL_CAPABILITIES = frozenset({
    REST_USE, COURSE_VIEW, VIEW_HIDDEN_COURSES, VIEW_HIDDEN_CATEGORIES, CATEGORY_MANAGE, COURSE_UPDATE,
    ENROL_REVIEW, COURSE_VIEW_PARTICIPANTS, SITE_VIEW_PARTICIPANTS, USER_VIEW_DETAILS, USER_VIEW_ALL_DETAILS,
    VIEW_USER_IDENTITY, VIEW_HIDDEN_DETAILS, VIEW_HIDDEN_USER_FIELDS, VIEW_FULL_NAMES, ACCESS_ALL_GROUPS,
})
# The role of docs/moodle-setup.md §4 (no viewparticipants: enrolreview satisfies that check).
GUIDE_ROLE = ALL_CAPABILITIES - {COURSE_VIEW_PARTICIPANTS, SITE_VIEW_PARTICIPANTS}
READER_ROLE = frozenset({
    REST_USE, COURSE_VIEW, COURSE_VIEW_PARTICIPANTS, SITE_VIEW_PARTICIPANTS, USER_VIEW_DETAILS,
    VIEW_USER_IDENTITY, VIEW_HIDDEN_DETAILS, VIEW_HIDDEN_USER_FIELDS, VIEW_FULL_NAMES, ACCESS_ALL_GROUPS,
})

# Token and account states, as Moodle answers them (onboarding-findings §3):
# refused before any function runs ...
EXPIRED = "expired"  # first call accessexception (and the token is deleted), then invalidtoken
IP_RESTRICTED = "ip_restricted"  # accessexception on every call
SERVICE_DISABLED = "service_disabled"  # accessexception on every call
AUTHORISED_USERS = "authorised_users"  # "authorised users only" without this user: accessexception
REQUIRED_CAPABILITY = "required_capability"  # the service's required capability missing: accessexception
SUSPENDED = "suspended"  # wsaccessusersuspended
NOLOGIN = "nologin"  # wsaccessusernologin
# ... or let in, but the account cannot open the site: site info works, categories are [],
# courses public-only, participant lists and user details fail.
FORCE_PASSWORD_CHANGE = "force_password_change"
NOT_FULLY_SET_UP = "not_fully_set_up"
SITE_POLICY = "site_policy"
ACCOUNT_STATES = (FORCE_PASSWORD_CHANGE, NOT_FULLY_SET_UP, SITE_POLICY)
STATES = (EXPIRED, IP_RESTRICTED, SERVICE_DISABLED, AUTHORISED_USERS, REQUIRED_CAPABILITY, SUSPENDED, NOLOGIN,
          *ACCOUNT_STATES)

PRESETS = ("admin", "manager", "dedicated", "reader", "plain")


@dataclass(frozen=True)
class TokenSpec:
    """One token: its user's capabilities (system level), whether that user is a site
    administrator, the service's functions (``None``: the emulated service's full list), a
    token/account state (``None``: none), and the account (``username``; ``None``: the admin
    account, id 2). An account named here that the dataset lacks is created at start-up."""

    capabilities: frozenset[str] = field(default_factory=frozenset)
    site_admin: bool = False
    functions: tuple[str, ...] | None = None
    state: str | None = None
    username: str | None = None

    def __post_init__(self) -> None:
        unknown = set(self.capabilities) - ALL_CAPABILITIES
        if unknown:
            raise ValueError(f"unknown capabilities {sorted(unknown)}; known: {sorted(ALL_CAPABILITIES)}")
        if self.state is not None and self.state not in STATES:
            raise ValueError(f"state must be one of {STATES}, not {self.state!r}")

    @classmethod
    def preset(cls, name: str, **changes) -> TokenSpec:
        if name not in PRESETS:
            raise ValueError(f"preset must be one of {PRESETS}, not {name!r}")
        base = {
            "admin": cls(ALL_CAPABILITIES, site_admin=True),
            "manager": cls(ALL_CAPABILITIES),
            "dedicated": cls(GUIDE_ROLE),
            "reader": cls(READER_ROLE),
            "plain": cls(frozenset({REST_USE})),
        }[name]
        return replace(base, **changes) if changes else base

    def without(self, *capabilities: str) -> TokenSpec:
        return replace(self, capabilities=self.capabilities - set(capabilities))

    def can(self, capability: str) -> bool:
        return self.site_admin or capability in self.capabilities

    @property
    def account_state(self) -> str | None:
        return self.state if self.state in ACCOUNT_STATES else None


def as_spec(value) -> TokenSpec:
    """A TokenSpec from a spec, a preset name ("admin", "reader", ...) or a dict of fields."""
    if isinstance(value, TokenSpec):
        return value
    if isinstance(value, str):
        return TokenSpec.preset(value)
    if isinstance(value, dict):
        data = dict(value)
        preset = data.pop("preset", None)
        if "capabilities" in data:
            data["capabilities"] = frozenset(data["capabilities"])
        if "functions" in data and data["functions"] is not None:
            data["functions"] = tuple(data["functions"])
        without = data.pop("without", ())
        spec = TokenSpec.preset(preset, **data) if preset else TokenSpec(**data)
        return spec.without(*without) if without else spec
    raise ValueError(f"a token spec must be a TokenSpec, a preset name or a dict, not {type(value).__name__}")
