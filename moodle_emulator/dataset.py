"""The emulator's data model: a compact, mutable in-memory Moodle site.

Storage is columnar so that scale L (100k users, 1M enrolments) stays small:

* ``Dataset.users`` (:class:`Users`): one Python list / ``array`` per user column, user
  id ``u`` at index ``u - 1``; deleted users keep their slot (flag ``DELETED``).
* ``Dataset.enrolments``: ``{course_id: CourseEnrolments}``; each holds four parallel
  arrays sorted by user id — ``users`` (int32), ``roles`` (bit mask, see ``ROLES``),
  ``status`` (``ACTIVE``/``SUSPENDED``/``EXPIRED``/``FUTURE``) and ``lastaccess``
  (``user_lastaccess.timeaccess`` for that course, 0 = never). One row per
  (course, user) pair: several enrolment instances of the same user in a course (e.g.
  manual + self) are merged, the row is active if any instance is.
* ``Dataset.user_courses``: ``{user_id: array of course ids}`` (the reverse index).
* ``Dataset.courses``: ``{id: Course}`` including the site course id 1 (format ``site``).
* ``Dataset.categories``: ``{id: Category}``.
* ``Dataset.customfields``: the course custom field definitions (``CustomField``), in
  display order; every course lists every field (value ``None``/"" when unset).
* ``Dataset.now``: the fixed "current time" the data was generated around (Unix s).

In-process tests can compute expected rows straight from these attributes; see also
``Dataset.summary()`` (what ``GET /__emulator__/dataset`` answers) and the helpers
``active_enrolments_count()``, ``enrolment(course_id, user_id)``.
"""

from __future__ import annotations

import bisect
import html
import threading
from array import array
from dataclasses import dataclass, field

SITE_COURSE_ID = 1

# role bit -> (roleid, shortname); built-in roles have an empty name in Moodle.
ROLES = {
    1: (1, "manager"),
    2: (3, "editingteacher"),
    4: (4, "teacher"),
    8: (5, "student"),
}
ROLE_BITS = {short: bit for bit, (_rid, short) in ROLES.items()}
# roles that carry moodle/course:viewhiddencourses in a course
VIEW_HIDDEN_MASK = 1 | 2 | 4
CONTACT_MASK = 2  # $CFG->coursecontact = editingteacher

ACTIVE, SUSPENDED, EXPIRED, FUTURE = 0, 1, 2, 3
STATUS_NAMES = {ACTIVE: "active", SUSPENDED: "suspended", EXPIRED: "expired", FUTURE: "future"}

SUSPENDED_FLAG = 1
DELETED = 2


def format_string(s: str) -> str:
    """Moodle format_string(): names go out HTML-escaped (``&`` -> ``&amp;``)."""
    return html.escape(s, quote=False)


@dataclass(slots=True)
class Category:
    id: int
    name: str  # raw (unescaped); sent through format_string
    idnumber: str | None
    description: str
    descriptionformat: int
    parent: int
    sortorder: int
    visible: int = 1
    visibleold: int = 1
    timemodified: int = 0
    depth: int = 1
    path: str = ""
    theme: str = ""


@dataclass(slots=True)
class CustomField:
    shortname: str
    name: str
    type: str  # "number" or "text"
    visibility: int = 2  # 0 nobody, 1 teachers (course:update), 2 everyone
    decimals: int = 2

    def export(self, raw) -> dict:
        if self.type == "number":
            if raw is None or raw == "":
                return {"name": self.name, "shortname": self.shortname, "type": "number", "valueraw": None, "value": None}
            num = float(raw)
            valueraw = int(num) if num == int(num) else num
            value = "0" if num == 0 else f"{num:.{self.decimals}f}"
            return {"name": self.name, "shortname": self.shortname, "type": "number", "valueraw": valueraw, "value": value}
        raw = "" if raw is None else str(raw)
        return {"name": self.name, "shortname": self.shortname, "type": self.type, "valueraw": raw,
                "value": raw if raw != "" else None}


@dataclass(slots=True)
class Course:
    id: int
    shortname: str
    fullname: str  # raw; sent through format_string
    categoryid: int
    idnumber: str
    summary: str
    summaryformat: int
    format: str
    visible: int
    startdate: int
    enddate: int
    timecreated: int
    timemodified: int
    sortorder: int
    contextid: int
    cacherev: int
    customvalues: dict = field(default_factory=dict)  # shortname -> raw value
    enrolmethods: tuple = ("manual",)
    newsitems: int = 1
    numsections: int = 0
    showcompletionconditions: bool | None = True
    groupmode: int = 0  # 0 no groups, 1 separate groups, 2 visible groups (the emulated site has no groups)


@dataclass(slots=True)
class SiteConfig:
    sitename: str = "Moodle"
    release: str = "5.0.6+ (Build: 20260403)"
    version: str = "2025041406.11"
    themerev: int = 1795713799
    admin_id: int = 2
    privatekey: str = "907fbb718a296f30122dccebed4f20b4"
    enrolments_synced: str = "1795713772"
    site_timecreated: int = 1795713717


class Users:
    """Columnar user table. Id ``u`` lives at index ``u - 1``."""

    COLUMNS = ("username", "firstname", "lastname", "email", "idnumber", "city", "country", "description", "auth")

    def __init__(self) -> None:
        self.username: list[str] = []
        self.firstname: list[str] = []
        self.lastname: list[str] = []
        self.email: list[str] = []
        self.idnumber: list[str] = []
        self.city: list[str] = []
        self.country: list[str] = []
        self.description: list[str] = []
        self.auth: list[str] = []
        self.firstaccess = array("i")
        self.lastaccess = array("i")
        self.flags = bytearray()
        self._email_index: dict[str, list[int]] | None = None
        self._username_index: dict[str, int] | None = None
        self._idnumber_index: dict[str, list[int]] | None = None

    def __len__(self) -> int:
        return len(self.username)

    def add(self, username: str, firstname: str, lastname: str, email: str, idnumber: str = "",
            city: str = "", country: str = "", description: str = "", firstaccess: int = 0,
            lastaccess: int = 0, suspended: bool = False, auth: str = "manual") -> int:
        self.username.append(username)
        self.firstname.append(firstname)
        self.lastname.append(lastname)
        self.email.append(email)
        self.idnumber.append(idnumber)
        self.city.append(city)
        self.country.append(country)
        self.description.append(description)
        self.auth.append(auth)
        self.firstaccess.append(firstaccess)
        self.lastaccess.append(lastaccess)
        self.flags.append(SUSPENDED_FLAG if suspended else 0)
        self.invalidate()
        return len(self.username)

    def invalidate(self) -> None:
        self._email_index = self._username_index = self._idnumber_index = None

    def exists(self, uid: int) -> bool:
        return 1 <= uid <= len(self.username) and not self.flags[uid - 1] & DELETED

    def suspended(self, uid: int) -> bool:
        return bool(self.flags[uid - 1] & SUSPENDED_FLAG)

    def fullname(self, uid: int) -> str:
        return f"{self.firstname[uid - 1]} {self.lastname[uid - 1]}"

    def ids(self):
        flags = self.flags
        return [i + 1 for i in range(len(flags)) if not flags[i] & DELETED]

    def count(self) -> int:
        return sum(1 for f in self.flags if not f & DELETED)

    def by_email(self, email_lower: str) -> list[int]:
        if self._email_index is None:
            idx: dict[str, list[int]] = {}
            for i, e in enumerate(self.email):
                if not self.flags[i] & DELETED:
                    idx.setdefault(e.lower(), []).append(i + 1)
            self._email_index = idx
        return self._email_index.get(email_lower, [])

    def by_username(self, username: str) -> int | None:
        if self._username_index is None:
            self._username_index = {u: i + 1 for i, u in enumerate(self.username) if not self.flags[i] & DELETED}
        return self._username_index.get(username)

    def by_idnumber(self, idnumber: str) -> list[int]:
        if self._idnumber_index is None:
            idx: dict[str, list[int]] = {}
            for i, v in enumerate(self.idnumber):
                if v and not self.flags[i] & DELETED:
                    idx.setdefault(v, []).append(i + 1)
            self._idnumber_index = idx
        return self._idnumber_index.get(idnumber, [])


class CourseEnrolments:
    __slots__ = ("users", "roles", "status", "lastaccess")

    def __init__(self) -> None:
        self.users = array("i")
        self.roles = array("B")
        self.status = array("B")
        self.lastaccess = array("i")

    def __len__(self) -> int:
        return len(self.users)

    def find(self, uid: int) -> int:
        i = bisect.bisect_left(self.users, uid)
        return i if i < len(self.users) and self.users[i] == uid else -1

    def append_sorted(self, uid: int, roles: int, status: int, lastaccess: int) -> None:
        """Append when uid is larger than every present uid (generator fast path)."""
        self.users.append(uid)
        self.roles.append(roles)
        self.status.append(status)
        self.lastaccess.append(lastaccess)

    def insert(self, uid: int, roles: int, status: int, lastaccess: int) -> None:
        i = bisect.bisect_left(self.users, uid)
        self.users.insert(i, uid)
        self.roles.insert(i, roles)
        self.status.insert(i, status)
        self.lastaccess.insert(i, lastaccess)

    def pop(self, i: int) -> None:
        self.users.pop(i)
        self.roles.pop(i)
        self.status.pop(i)
        self.lastaccess.pop(i)


class Dataset:
    """A whole emulated Moodle site. See the module docstring for the attributes."""

    def __init__(self, name: str, seed: int, now: int, site: SiteConfig) -> None:
        self.name = name
        self.seed = seed
        self.now = now
        self.site = site
        self.categories: dict[int, Category] = {}
        self.courses: dict[int, Course] = {}
        self.customfields: list[CustomField] = []
        self.users = Users()
        self.enrolments: dict[int, CourseEnrolments] = {}
        self.user_courses: dict[int, array] = {}
        self.lock = threading.RLock()
        self.version = 0  # bumped on every mutation

    # ------------------------------------------------------------ building / reading
    def add_category(self, cat: Category) -> None:
        self.categories[cat.id] = cat

    def add_course(self, course: Course) -> None:
        self.courses[course.id] = course
        self.enrolments.setdefault(course.id, CourseEnrolments())

    def build_user_index(self) -> None:
        """(Re)build ``user_courses`` from ``enrolments`` (course ids ascending)."""
        idx: dict[int, array] = {}
        for cid in sorted(self.enrolments):
            for uid in self.enrolments[cid].users:
                a = idx.get(uid)
                if a is None:
                    a = idx[uid] = array("i")
                a.append(cid)
        self.user_courses = idx

    def enrolment(self, course_id: int, user_id: int) -> tuple[int, int, int] | None:
        """(roles mask, status, lastaccess) of a user's enrolment in a course, or None."""
        ce = self.enrolments.get(course_id)
        if ce is None:
            return None
        i = ce.find(user_id)
        if i < 0:
            return None
        return ce.roles[i], ce.status[i], ce.lastaccess[i]

    def is_contact(self, user_id: int) -> bool:
        """Whether the user is a course contact ($CFG->coursecontact: an active editing teacher)
        somewhere: Moodle shows such users to anyone who can see the course."""
        for cid in self.user_courses.get(user_id, ()):
            e = self.enrolment(cid, user_id)
            if e is not None and e[0] & CONTACT_MASK and e[1] == ACTIVE:
                return True
        return False

    def course_sort_key(self, c: Course) -> tuple:
        """Order of ``core_course_get_courses`` (no ids): site first, then by category
        sortorder and course id (what the real capture shows)."""
        if c.id == SITE_COURSE_ID:
            return (0, 0, 0)
        cat = self.categories.get(c.categoryid)
        return (1, cat.sortorder if cat else 0, c.id)

    def coursecounts(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for c in self.courses.values():
            if c.id != SITE_COURSE_ID:
                counts[c.categoryid] = counts.get(c.categoryid, 0) + 1
        return counts

    def enrolled_count(self, course_id: int) -> int:
        ce = self.enrolments.get(course_id)
        if ce is None:
            return 0
        users = self.users
        return sum(1 for u in ce.users if users.exists(u))

    def active_enrolments_count(self) -> int:
        exists = self.users.exists
        n = 0
        for cid, ce in self.enrolments.items():
            if cid not in self.courses:
                continue
            for u, s in zip(ce.users, ce.status):
                if s == ACTIVE and exists(u):
                    n += 1
        return n

    def enrolments_count(self) -> int:
        exists = self.users.exists
        return sum(1 for cid, ce in self.enrolments.items() if cid in self.courses for u in ce.users if exists(u))

    def summary(self) -> dict:
        courses = [c for c in self.courses.values() if c.id != SITE_COURSE_ID]
        user_ids = self.users.ids()
        status_counts = {name: 0 for name in STATUS_NAMES.values()}
        exists = self.users.exists
        role_rows = 0
        multi_role = 0
        for cid, ce in self.enrolments.items():
            if cid not in self.courses:
                continue
            for u, s, r in zip(ce.users, ce.status, ce.roles):
                if exists(u):
                    status_counts[STATUS_NAMES[s]] += 1
                    role_rows += 1
                    if r & (r - 1):
                        multi_role += 1
        enrolled_users = {u for u in user_ids if u in self.user_courses}
        priced = 0
        for c in courses:
            v = c.customvalues.get("price")
            if v not in (None, ""):
                priced += 1
        return {
            "name": self.name,
            "seed": self.seed,
            "now": self.now,
            "categories": len(self.categories),
            "courses": len(courses),
            "hidden_courses": sum(1 for c in courses if not c.visible),
            "priced_courses": priced,
            "users": len(user_ids),
            "suspended_users": sum(1 for u in user_ids if self.users.suspended(u)),
            "users_without_email": sum(1 for u in user_ids if not self.users.email[u - 1]),
            "users_without_enrolments": len(user_ids) - len(enrolled_users),
            "enrolments": role_rows,
            "active_enrolments": status_counts["active"],
            "enrolments_by_status": status_counts,
            "multi_role_enrolments": multi_role,
            "customfields": [f.shortname for f in self.customfields],
            "version": self.version,
        }

    # ------------------------------------------------------------ mutations (hold self.lock)
    def touch(self) -> None:
        self.version += 1

    def set_enrolment(self, course_id: int, user_id: int, roles: int, status: int, lastaccess: int = 0) -> None:
        ce = self.enrolments.setdefault(course_id, CourseEnrolments())
        i = ce.find(user_id)
        if i >= 0:
            ce.roles[i] = roles
            ce.status[i] = status
            return
        ce.insert(user_id, roles, status, lastaccess)
        uc = self.user_courses.get(user_id)
        if uc is None:
            uc = self.user_courses[user_id] = array("i")
        uc.insert(bisect.bisect_left(uc, course_id), course_id)

    def remove_enrolment(self, course_id: int, user_id: int) -> bool:
        ce = self.enrolments.get(course_id)
        if ce is None:
            return False
        i = ce.find(user_id)
        if i < 0:
            return False
        ce.pop(i)
        self._unlink_user_course(user_id, course_id)
        return True

    def _unlink_user_course(self, user_id: int, course_id: int) -> None:
        """Drop `course_id` from the user's sorted course index (and the index if it empties)."""
        uc = self.user_courses.get(user_id)
        if uc is None:
            return
        j = bisect.bisect_left(uc, course_id)
        if j < len(uc) and uc[j] == course_id:
            uc.pop(j)
        if not len(uc):
            del self.user_courses[user_id]

    def remove_course(self, course_id: int) -> int:
        ce = self.enrolments.pop(course_id, None)
        n = 0
        if ce is not None:
            for uid in list(ce.users):
                self._unlink_user_course(uid, course_id)
                n += 1
        del self.courses[course_id]
        return n
