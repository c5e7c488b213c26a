"""The emulated web-service functions, with Moodle's response shapes and key order.

Each handler takes a :class:`Ctx` and the validated arguments and returns
``(result, cost)`` where ``cost`` is ``(rows, fields)`` for the cost model
(``fields`` = the user fields asked for, or None for "all").

Key order follows each function's ``*_returns()`` description (checked against the real
captures); optional keys that Moodle does not set are omitted; ints/bools/nulls have the
JSON types the captures show.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from . import errors
from .encoding import rows
from .dataset import (ACTIVE, CONTACT_MASK, ROLES, SITE_COURSE_ID, VIEW_HIDDEN_MASK, Course, Dataset,
                      format_string)
from .params import DEFAULT, OPTIONAL, Multiple, Single, Value, php_intval
from .tokens import (ACCESS_ALL_GROUPS, CATEGORY_MANAGE, COURSE_UPDATE, COURSE_VIEW, COURSE_VIEW_PARTICIPANTS,
                     ENROL_REVIEW, SITE_VIEW_PARTICIPANTS, USER_VIEW_ALL_DETAILS, USER_VIEW_DETAILS,
                     VIEW_HIDDEN_CATEGORIES, VIEW_HIDDEN_COURSES, VIEW_HIDDEN_DETAILS, VIEW_HIDDEN_USER_FIELDS,
                     VIEW_USER_IDENTITY, TokenSpec)

TIERS = ("admin", "manager", "reader")  # the historical preset names; see tokens.PRESETS for all
_ADMIN = TokenSpec.preset("admin")


@dataclass
class Ctx:
    """One call's view of the site: the token's spec and the site settings that shape answers."""

    ds: Dataset
    url: str  # site base URL, e.g. http://127.0.0.1:8089
    spec: TokenSpec = _ADMIN
    empty_lists: bool = False
    user_id: int = 2  # the token's account
    hidden_user_fields: frozenset = frozenset()  # $CFG->hiddenuserfields

    @property
    def admin(self) -> bool:
        return self.spec.site_admin

    def can(self, capability: str) -> bool:
        return self.spec.can(capability)

    @property
    def can_update(self) -> bool:  # moodle/course:update
        return self.can(COURSE_UPDATE)

    @property
    def account_state(self) -> str | None:
        return self.spec.account_state

    def listable(self, c: Course) -> bool:
        """Listed by get_courses(_by_field): visible, or moodle/course:viewhiddencourses."""
        return bool(c.visible) or self.can(VIEW_HIDDEN_COURSES)

    def enterable(self, c: Course) -> bool:
        """require_login($course) passes: an account that can open the site, and then the front
        page always; another course with moodle/course:view (the token's user is enrolled
        nowhere) if it is visible or the token has moodle/course:viewhiddencourses."""
        if self.account_state is not None:
            return False
        return c.id == SITE_COURSE_ID or (self.can(COURSE_VIEW) and self.listable(c))

    def sees_user(self, uid: int) -> bool:
        """user_get_user_details() returns the row: user:viewdetails, the token's own account, or a
        course contact (editing teacher) somewhere."""
        return self.can(USER_VIEW_DETAILS) or uid == self.user_id or self.ds.is_contact(uid)

    def shows(self, uid: int, field: str) -> bool:
        """A $CFG->hiddenuserfields field is shown only with moodle/user:viewhiddendetails (not even
        to the account itself, as the capture shows)."""
        return field not in self.hidden_user_fields or self.can(VIEW_HIDDEN_DETAILS)

    def img(self, size: str) -> str:
        return f"{self.url}/theme/image.php/boost/core/{self.ds.site.themerev}/u/{size}"


SERVICE_FUNCTIONS = (
    "core_course_get_categories",
    "core_course_get_courses",
    "core_course_get_courses_by_field",
    "core_enrol_get_enrolled_users",
    "core_enrol_get_users_courses",
    "core_user_get_users",
    "core_user_get_users_by_field",
    "core_webservice_get_site_info",
)

# Real core functions that exist but are not in the emulated service -> accessexception.
OTHER_KNOWN_FUNCTIONS = frozenset("""
core_course_create_courses core_course_update_courses core_course_delete_courses core_course_search_courses
core_course_get_contents core_course_create_categories core_course_update_categories core_course_delete_categories
core_course_get_recent_courses core_course_get_enrolled_courses_by_timeline_classification
core_enrol_get_course_enrolment_methods core_enrol_get_enrolled_users_with_capability core_enrol_search_users
core_user_create_users core_user_update_users core_user_delete_users core_user_get_course_user_profiles
core_user_get_private_files_info core_group_get_course_groups core_group_get_groups core_cohort_get_cohorts
core_completion_get_activities_completion_status core_grades_get_grades gradereport_user_get_grade_items
core_reportbuilder_retrieve_report core_payment_get_available_gateways core_calendar_get_calendar_events
core_message_send_instant_messages core_role_assign_roles core_role_unassign_roles enrol_manual_enrol_users
enrol_manual_unenrol_users enrol_self_enrol_user enrol_self_get_instance_info enrol_guest_get_instance_info
mod_assign_get_assignments mod_forum_get_forums_by_courses mod_quiz_get_quizzes_by_courses
core_webservice_get_site_info_extended tool_mobile_get_config tool_mobile_get_public_config
""".split())

ADVANCED_FEATURES = (
    ("usecomments", 1), ("usetags", 1), ("enablenotes", 1), ("messaging", 1), ("enableblogs", 1),
    ("enablecompletion", 1), ("enablebadges", 1), ("messagingallusers", 0), ("enablecustomreports", 1),
    ("enableglobalsearch", 0), ("mnet_dispatcher_mode", 0), ("enablecompetencies", 1),
)

SITE_INFO_XML_KEYS = [
    "sitename", "username", "firstname", "lastname", "fullname", "lang", "userid", "siteurl", "userpictureurl",
    "functions", "downloadfiles", "uploadfiles", "release", "version", "mobilecssurl", "advancedfeatures",
    "usercanmanageownfiles", "userquota", "usermaxuploadfilesize", "userhomepage", "userhomepageurl",
    "userprivateaccesskey", "siteid", "sitecalendartype", "usercalendartype", "userissiteadmin", "theme",
    "limitconcurrentlogins", "usersessionscount", "policyagreed",
]

FILTERS = ("displayh5p", "activitynames", "mathjaxloader", "emoticon", "urltolink", "mediaplugin")


# ------------------------------------------------------------------ site info

def site_info(ctx: Ctx, args: dict):
    ds = ctx.ds
    u = ds.users
    uid = ctx.user_id
    i = uid - 1
    version = ds.site.version
    out = {
        "sitename": format_string(ds.site.sitename),
        "username": u.username[i],
        "firstname": u.firstname[i],
        "lastname": u.lastname[i],
        "fullname": u.fullname(uid),
        "lang": "en",
        "userid": uid,
        "siteurl": ctx.url,
        "userpictureurl": ctx.img("f1"),
        "functions": [{"name": f, "version": version} for f in (ctx.spec.functions or SERVICE_FUNCTIONS)],
        "downloadfiles": 0,
        "uploadfiles": 0,
        "release": ds.site.release,
        "version": version,
        "mobilecssurl": "",
        "advancedfeatures": [{"name": n, "value": v} for n, v in ADVANCED_FEATURES],
        "usercanmanageownfiles": True,
        "userquota": 0 if ctx.admin else 104857600,
        "usermaxuploadfilesize": -1 if ctx.admin else 67108864,
        "userhomepage": 1,
        "userprivateaccesskey": ds.site.privatekey,
        "siteid": SITE_COURSE_ID,
        "sitecalendartype": "gregorian",
        "usercalendartype": "gregorian",
        "userissiteadmin": ctx.admin,
        "theme": "boost",
        "limitconcurrentlogins": 0,
        "policyagreed": 0,
    }
    return out, (0, None)


# ------------------------------------------------------------------ categories

def get_categories(ctx: Ctx, args: dict):
    ds = ctx.ds
    cats = list(ds.categories.values())
    matched = cats
    criteria = args["criteria"]
    if criteria:
        for crit in criteria:
            key, value = crit["key"], crit["value"]
            if key not in ("id", "ids", "name", "parent", "idnumber", "visible", "theme"):
                raise errors.criteria_error()
            if key in ("idnumber", "theme") and not ctx.can(CATEGORY_MANAGE):
                raise errors.criteria_error(key)
            if key == "visible" and not ctx.can(VIEW_HIDDEN_CATEGORIES):
                raise errors.criteria_error(key)
            if key in ("id", "parent", "visible"):
                v = php_intval(value)
                attr = {"id": "id", "parent": "parent", "visible": "visible"}[key]
                matched = [c for c in matched if getattr(c, attr) == v]
            elif key == "ids":
                ids = {php_intval(x) for x in value.split(",") if x.strip()}
                matched = [c for c in matched if c.id in ids]
            elif key == "name":
                matched = [c for c in matched if c.name == value]
            elif key == "idnumber":
                matched = [c for c in matched if (c.idnumber or "") == value]
            else:
                matched = [c for c in matched if c.theme == value]
        if args["addsubcategories"]:
            found = {c.id for c in matched}
            for c in list(matched):
                prefix = c.path + "/"
                for d in cats:
                    if d.id not in found and d.path.startswith(prefix):
                        matched.append(d)
                        found.add(d.id)
    if not ctx.can(VIEW_HIDDEN_CATEGORIES):
        # a hidden category and everything inside it
        hidden = [c.path + "/" for c in cats if not c.visible]
        matched = [c for c in matched if c.visible and not any((c.path + "/").startswith(h) for h in hidden)]
    if ctx.account_state:
        matched = []  # validate_context() fails for every category: each one is skipped
    matched.sort(key=lambda c: str(c.sortorder))  # Moodle: strcmp on sortorder
    counts = ds.coursecounts()
    manage = ctx.can(CATEGORY_MANAGE)
    out = []
    for c in matched:
        d = {"id": c.id, "name": format_string(c.name)}
        if manage:
            d["idnumber"] = c.idnumber
        d["description"] = c.description
        d["descriptionformat"] = c.descriptionformat
        d["parent"] = c.parent
        d["sortorder"] = c.sortorder
        d["coursecount"] = counts.get(c.id, 0)
        if manage:
            d["visible"] = c.visible
            d["visibleold"] = c.visibleold
            d["timemodified"] = c.timemodified
        d["depth"] = c.depth
        d["path"] = c.path
        if manage:
            d["theme"] = c.theme
        out.append(d)
    if ctx.empty_lists:
        out = []
    return out, (len(out), None)


# ------------------------------------------------------------------ courses

def _customfields(ctx: Ctx, c: Course) -> list | None:
    # visibility 2 everyone, 1 teachers (course:update), 0 nobody (the administrator still sees it)
    minvis = 0 if ctx.admin else (1 if ctx.can(COURSE_UPDATE) else 2)
    out = [f.export(c.customvalues.get(f.shortname)) for f in ctx.ds.customfields if f.visibility >= minvis]
    return out or None


def _visible_to(ctx: Ctx, c: Course) -> bool:
    return ctx.listable(c)


def _course_get_courses(ctx: Ctx, c: Course) -> dict:
    site = c.id == SITE_COURSE_ID
    upd = ctx.can_update
    d = {"id": c.id, "shortname": format_string(c.shortname), "categoryid": c.categoryid}
    if upd:
        d["categorysortorder"] = c.sortorder
    d["fullname"] = format_string(c.fullname)
    d["displayname"] = format_string(c.fullname)
    if upd:
        d["idnumber"] = c.idnumber
    d["summary"] = c.summary
    d["summaryformat"] = c.summaryformat
    d["format"] = c.format
    if upd:
        d["showgrades"] = 1
        d["newsitems"] = c.newsitems
    d["startdate"] = c.startdate
    d["enddate"] = c.enddate
    if upd:
        d["numsections"] = c.numsections
        d["maxbytes"] = 0
        d["showreports"] = 0
        d["visible"] = c.visible
        if not site:
            d["hiddensections"] = 1
        d["groupmode"] = c.groupmode
        d["groupmodeforce"] = 0
        d["defaultgroupingid"] = 0
        d["timecreated"] = c.timecreated
        d["timemodified"] = c.timemodified
        d["enablecompletion"] = 0
        d["completionnotify"] = 0
        d["lang"] = ""
        d["forcetheme"] = ""
        d["courseformatoptions"] = (
            [{"name": "numsections", "value": 1}] if site
            else [{"name": "hiddensections", "value": 1}, {"name": "coursedisplay", "value": 0}]
        )
    d["showactivitydates"] = True
    d["showcompletionconditions"] = c.showcompletionconditions
    cf = _customfields(ctx, c)
    if cf is not None:
        d["customfields"] = cf
    return d


def get_courses(ctx: Ctx, args: dict):
    ds = ctx.ds
    ids = args["options"].get("ids")
    courses = sorted(ds.courses.values(), key=ds.course_sort_key)
    if ids:
        wanted = set(ids)
        courses = [c for c in courses if c.id in wanted]
    listed = [c for c in courses if _visible_to(ctx, c)]
    for c in listed:  # the whole call fails on the first course the token cannot enter
        if not ctx.enterable(c):
            if ctx.account_state:
                raise errors.course_context_account_state(c.id, ctx.account_state, ctx.url)
            raise errors.course_context_not_valid(c.id)
    out = [_course_get_courses(ctx, c) for c in listed]
    if ctx.empty_lists:
        out = []
    return out, (len(out), None)


def _contacts(ds: Dataset, c: Course) -> list:
    ce = ds.enrolments.get(c.id)
    if ce is None:
        return []
    users = ds.users
    found = [
        u for u, r, s in zip(ce.users, ce.roles, ce.status)
        if r & CONTACT_MASK and s == ACTIVE and users.exists(u)
    ]
    found.sort(key=lambda u: (users.lastname[u - 1], users.firstname[u - 1], u))
    return [{"id": u, "fullname": users.fullname(u)} for u in found]


def _course_by_field(ctx: Ctx, c: Course) -> dict:
    ds = ctx.ds
    site = c.id == SITE_COURSE_ID
    cat = ds.categories.get(c.categoryid)
    d = {
        "id": c.id,
        "fullname": format_string(c.fullname),
        "displayname": format_string(c.fullname),
        "shortname": format_string(c.shortname),
        "courseimage": f"{ctx.url}/pluginfile.php/{c.contextid}/course/generated/course.svg",
        "categoryid": c.categoryid,
        "categoryname": format_string(cat.name) if cat else "",
        "sortorder": c.sortorder,
        "summary": c.summary,
        "summaryformat": c.summaryformat,
        "summaryfiles": [],
        "overviewfiles": [],
        "showactivitydates": True,
        "showcompletionconditions": c.showcompletionconditions,
        "contacts": _contacts(ds, c),
        "enrollmentmethods": list(c.enrolmethods),
    }
    cf = _customfields(ctx, c)
    if cf is not None:
        d["customfields"] = cf
    if not ctx.enterable(c):
        return d  # public fields only
    upd = ctx.can_update
    if upd:
        d["idnumber"] = c.idnumber
    d.update({
        "format": c.format, "showgrades": 1, "newsitems": c.newsitems, "startdate": c.startdate,
        "enddate": c.enddate, "maxbytes": 0, "showreports": 0, "visible": c.visible, "groupmode": c.groupmode,
        "groupmodeforce": 0, "defaultgroupingid": 0, "enablecompletion": 0, "completionnotify": 0, "lang": "",
        "theme": "", "marker": 0,
    })
    if upd:
        d.update({"legacyfiles": 0, "calendartype": "", "timecreated": c.timecreated,
                  "timemodified": c.timemodified, "requested": 0, "cacherev": c.cacherev})
    d["filters"] = [{"filter": f, "localstate": 0, "inheritedstate": 1} for f in FILTERS]
    if not site:
        d["courseformatoptions"] = [
            {"name": "hiddensections", "value": 1}, {"name": "coursedisplay", "value": 0},
            {"name": "indentation", "value": "1"},
        ]
    return d


def get_courses_by_field(ctx: Ctx, args: dict):
    ds = ctx.ds
    field, value = args["field"], args["value"]
    allc = ds.courses
    if field == "":
        selected = [allc[k] for k in sorted(allc)]
    elif field in ("id", "category"):
        v = php_intval(value)
        if field == "id":
            selected = [allc[v]] if v in allc else []
        else:
            selected = [allc[k] for k in sorted(allc) if allc[k].categoryid == v]
    elif field == "ids":
        seq = value if re.fullmatch(r"[0-9,]*", value) else ""
        ids = {int(x) for x in seq.split(",") if x}
        selected = [allc[k] for k in sorted(ids) if k in allc]
    elif field == "shortname":
        selected = [allc[k] for k in sorted(allc) if allc[k].shortname == value]
    elif field == "idnumber":
        selected = [allc[k] for k in sorted(allc) if allc[k].idnumber == value]
    elif field == "sectionid":
        selected = []  # the emulator has no course sections
    else:
        raise errors.invalid_parameter("Invalid field name")
    out = [_course_by_field(ctx, c) for c in selected if _visible_to(ctx, c)]
    warnings = []
    if field == "ids":  # only this variant reports the courses it dropped
        warnings = [{"item": "course", "itemid": c.id, "warningcode": "1", "message": "No access rights in course context"}
                    for c in selected if not _visible_to(ctx, c)]
    if ctx.empty_lists:
        out = []
    return {"courses": out, "warnings": warnings}, (len(out), None)


# ------------------------------------------------------------------ users

# Moodle's `_lastloaded` preference is the time of the request; one name for that clock so a
# test comparing two answers byte for byte can hold it still.
clock = time.time


def _preferences(ctx: Ctx) -> list:
    return [
        {"name": "last_time_enrolments_synced", "value": ctx.ds.site.enrolments_synced},
        {"name": "_lastloaded", "value": int(clock())},
    ]


def _shows_email(ctx: Ctx, uid: int) -> bool:
    """Self; else the owner shows it to everyone (the admin account's maildisplay) or the token
    may see identity fields (email is in $CFG->showuseridentity) — unless email is a hidden field."""
    if uid == ctx.user_id:
        return True
    if not ctx.shows(uid, "email"):
        return False
    return uid == ctx.ds.site.admin_id or ctx.can(VIEW_USER_IDENTITY)


def user_details(ctx: Ctx, uid: int) -> dict:
    """``user_get_user_details`` as core_user_get_users(_by_field) return it."""
    u = ctx.ds.users
    i = uid - 1
    me = uid == ctx.user_id
    full = ctx.can(USER_VIEW_ALL_DETAILS) or me
    fn, ln = u.firstname[i], u.lastname[i]
    d = {"id": uid}
    if full:
        d["username"] = u.username[i]
    d["firstname"] = fn
    d["lastname"] = ln
    d["fullname"] = f"{fn} {ln}"
    if _shows_email(ctx, uid):
        d["email"] = u.email[i]
    if full:
        d["department"] = ""
    if full and u.idnumber[i]:
        d["idnumber"] = u.idnumber[i]
    if ctx.shows(uid, "firstaccess"):
        d["firstaccess"] = u.firstaccess[i]
    if ctx.shows(uid, "lastaccess"):
        d["lastaccess"] = u.lastaccess[i]
    if full:
        d["auth"] = u.auth[i]
    if ctx.shows(uid, "suspended"):
        d["suspended"] = bool(u.flags[i] & 1)
    if full:
        d["confirmed"] = True
        d["lang"] = "en"
        d["theme"] = ""
    d["timezone"] = "99"
    if full:
        d["mailformat"] = 1
        d["trackforums"] = 0
    # profilesforenrolledusersonly: a description only of users with a role somewhere (not the guest)
    if u.description[i] and (ctx.admin or me or ctx.ds.user_courses.get(uid)):
        d["description"] = u.description[i]
        d["descriptionformat"] = 1
    if u.city[i]:
        d["city"] = u.city[i]
    if u.country[i]:
        d["country"] = u.country[i]
    d["profileimageurlsmall"] = ctx.img("f2")
    d["profileimageurl"] = ctx.img("f1")
    if me:
        d["preferences"] = _preferences(ctx)
    return d


_LIKE_CACHE: dict[str, re.Pattern] = {}


def _like(pattern: str) -> re.Pattern:
    rx = _LIKE_CACHE.get(pattern)
    if rx is None:
        parts = []
        for ch in pattern:
            parts.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        rx = re.compile("".join(parts), re.IGNORECASE | re.DOTALL)
        if len(_LIKE_CACHE) < 1000:
            _LIKE_CACHE[pattern] = rx
    return rx


USER_CRITERIA = ("id", "lastname", "firstname", "idnumber", "username", "email", "auth")


def get_users(ctx: Ctx, args: dict):
    ds = ctx.ds
    u = ds.users
    seen = set()
    valid = []
    warnings = []
    for crit in args["criteria"]:
        key, value = crit["key"], crit["value"]
        if key in seen:
            raise errors.key_already_set(key)
        seen.add(key)
        if key not in USER_CRITERIA:
            warnings.append({"item": key, "warningcode": "invalidfieldparameter",
                             "message": f"The search key '{key}' is not supported, look at the web service documentation"})
            continue
        valid.append((key, value))
    ids = u.ids()
    for key, value in valid:
        if key == "id":
            v = php_intval(value)
            ids = [x for x in ids if x == v]
        elif key in ("email", "firstname", "lastname"):
            col = getattr(u, key)
            if "%" not in value and "_" not in value:
                low = value.lower()
                ids = [x for x in ids if col[x - 1].lower() == low]
            else:
                rx = _like(value)
                ids = [x for x in ids if rx.fullmatch(col[x - 1])]
            # a user is returned only if the searched field is non-empty in the details
            ids = [x for x in ids if col[x - 1] != ""]
            if key == "email":
                ids = [x for x in ids if _shows_email(ctx, x)]
        else:
            col = getattr(u, key)
            ids = [x for x in ids if col[x - 1] == value]
            if key == "idnumber" and not ctx.can(USER_VIEW_ALL_DETAILS):
                ids = []
    if ctx.account_state:
        raise errors.account_state(ctx.account_state, ctx.url)
    ids = [x for x in ids if ctx.sees_user(x)]
    users = [] if ctx.empty_lists else rows(ids, lambda x: user_details(ctx, x))
    return {"users": users, "warnings": warnings}, (len(users), None)


def get_users_by_field(ctx: Ctx, args: dict):
    ds = ctx.ds
    u = ds.users
    field = args["field"]
    if field not in ("id", "idnumber", "username", "email"):
        raise errors.coding_error("invalid field parameter")
    found: set[int] = set()
    for value in args["values"]:
        if field == "id":
            if str(php_intval(value)) != value:
                raise errors.invalid_parameter(
                    f'Invalid external api parameter: the value is "{value}", the server was expecting "int" type')
            v = int(value)
            if u.exists(v):
                found.add(v)
        elif field == "email":
            found.update(u.by_email(value.lower()))
        elif field == "username":
            x = u.by_username(value)
            if x is not None:
                found.add(x)
        else:
            found.update(u.by_idnumber(value))
    if ctx.account_state:
        raise errors.account_state(ctx.account_state, ctx.url)
    ids = [x for x in sorted(found) if ctx.sees_user(x)]
    if field == "email":
        ids = [x for x in ids if u.email[x - 1]]
    out = [] if ctx.empty_lists else rows(ids, lambda x: user_details(ctx, x))
    return out, (len(out), None)


# ------------------------------------------------------------------ enrolments

USER_DEFAULT_FIELDS = (
    "id", "username", "fullname", "firstname", "lastname", "email", "address", "phone1", "phone2", "department",
    "institution", "interests", "firstaccess", "lastaccess", "auth", "confirmed", "idnumber", "lang", "theme",
    "timezone", "mailformat", "description", "descriptionformat", "city", "country", "profileimageurlsmall",
    "profileimageurl", "customfields", "groups", "roles", "preferences", "enrolledcourses", "suspended",
    "lastcourseaccess", "trackforums",
)


def _enrolled_courses(ds: Dataset, uid: int) -> list:
    cids = ds.user_courses.get(uid)
    if not cids:
        return []
    picked = []
    for cid in cids:
        if cid == SITE_COURSE_ID:
            continue
        c = ds.courses.get(cid)
        if c is None:
            continue
        e = ds.enrolment(cid, uid)
        if e is None or e[1] != ACTIVE:
            continue
        if not c.visible and not e[0] & VIEW_HIDDEN_MASK:
            continue
        picked.append(c)
    picked.sort(key=lambda c: (-c.visible, c.sortorder, c.id))
    return [{"id": c.id, "fullname": format_string(c.fullname), "shortname": format_string(c.shortname)}
            for c in picked]


def _roles(mask: int) -> list:
    return [{"roleid": rid, "name": "", "shortname": short, "sortorder": 0}
            for bit, (rid, short) in ROLES.items() if mask & bit]


def enrolled_user(ctx: Ctx, uid: int, roles: int, lca: int, fields: frozenset | None) -> dict:
    u = ctx.ds.users
    i = uid - 1
    w = (lambda f: True) if fields is None else fields.__contains__
    me = uid == ctx.user_id
    full = ctx.can(USER_VIEW_ALL_DETAILS) or me
    d = {"id": uid}
    if w("username") and full:
        d["username"] = u.username[i]
    if w("firstname"):
        d["firstname"] = u.firstname[i]
    if w("lastname"):
        d["lastname"] = u.lastname[i]
    d["fullname"] = f"{u.firstname[i]} {u.lastname[i]}"
    if w("email") and _shows_email(ctx, uid):
        d["email"] = u.email[i]
    if w("department"):
        d["department"] = ""
    if w("idnumber") and u.idnumber[i] and full:
        d["idnumber"] = u.idnumber[i]
    if w("firstaccess") and ctx.shows(uid, "firstaccess"):
        d["firstaccess"] = u.firstaccess[i]
    if w("lastaccess") and ctx.shows(uid, "lastaccess"):
        d["lastaccess"] = u.lastaccess[i]
    # a course's last access is hidden with "lastaccess" unless course:viewhiddenuserfields
    if w("lastcourseaccess") and ("lastaccess" not in ctx.hidden_user_fields or ctx.can(VIEW_HIDDEN_USER_FIELDS)):
        d["lastcourseaccess"] = lca
    if w("description") and u.description[i]:
        d["description"] = u.description[i]
        d["descriptionformat"] = 1
    if w("city") and u.city[i]:
        d["city"] = u.city[i]
    if w("country") and u.country[i]:
        d["country"] = u.country[i]
    if w("profileimageurlsmall"):
        d["profileimageurlsmall"] = ctx.img("f2")
    if w("profileimageurl"):
        d["profileimageurl"] = ctx.img("f1")
    if w("roles"):
        d["roles"] = _roles(roles)
    if w("preferences") and me:
        d["preferences"] = _preferences(ctx)
    if w("enrolledcourses"):
        ec = _enrolled_courses(ctx.ds, uid)
        if ec:
            d["enrolledcourses"] = ec
    return d


def get_enrolled_users(ctx: Ctx, args: dict):
    ds = ctx.ds
    courseid = args["courseid"]
    onlyactive = onlysuspended = False
    limitfrom = limitnumber = 0
    fields = None
    sortby, sortdir = "id", "ASC"
    groupid = 0
    for opt in args["options"]:
        name, value = opt["name"], opt["value"]
        if name == "withcapability":
            pass  # accepted; every enrolled user is assumed to hold the capability
        elif name == "groupid":
            groupid = php_intval(value)
        elif name == "onlyactive":
            onlyactive = value not in ("", "0")  # PHP !empty()
        elif name == "onlysuspended":
            onlysuspended = value not in ("", "0")
        elif name == "userfields":
            fields = [f.strip() for f in value.split(",")]
        elif name == "limitfrom":
            limitfrom = php_intval(value)
        elif name == "limitnumber":
            limitnumber = php_intval(value)
        elif name == "sortby":
            if value not in ("id", "firstname", "lastname", "siteorder"):
                raise errors.invalid_parameter(
                    f"Invalid value for sortby parameter (value: {value}),allowed values are: id,firstname,lastname,siteorder")
            sortby = value
        elif name == "sortdirection":
            value = value.upper()
            if value not in ("ASC", "DESC"):
                raise errors.invalid_parameter(
                    f"Invalid value for sortdirection parameter (value: {value}),allowed values are: ASC,DESC")
            sortdir = value
        # unknown option names are silently ignored (real Moodle)
    if courseid not in ds.courses:
        raise errors.unknown_course(courseid)
    # validate_context(): the course context (the system context for the site course)
    if ctx.account_state:
        raise errors.course_context_account_state(courseid, ctx.account_state, ctx.url)
    course = ds.courses[courseid]
    if not ctx.enterable(course):
        raise errors.course_context_not_valid(courseid)
    if courseid == SITE_COURSE_ID:
        if not (ctx.can(SITE_VIEW_PARTICIPANTS) or ctx.can(ENROL_REVIEW)):
            raise errors.no_permissions("View participants", "moodle/site:viewparticipants")
    elif not (ctx.can(COURSE_VIEW_PARTICIPANTS) or ctx.can(ENROL_REVIEW)):
        raise errors.no_permissions("View participants", "moodle/course:viewparticipants")
    if groupid and not ctx.can(ACCESS_ALL_GROUPS):
        raise errors.no_permissions("Access all groups", "moodle/site:accessallgroups")
    if (onlyactive or onlysuspended) and not ctx.can(ENROL_REVIEW):
        raise errors.no_permissions("Review course enrolments", "moodle/course:enrolreview")
    if onlyactive and onlysuspended:
        raise errors.coding_error("Both onlyactive and onlysuspended are set, this is probably not what you want!")
    if fields is not None:
        for f in fields:
            if f not in USER_DEFAULT_FIELDS:
                raise errors.invalid_user_field(f)
        fields = frozenset(fields) | {"id", "fullname"}
    users = ds.users
    if courseid == SITE_COURSE_ID:
        # site course: every user on the site, no roles, no enrolment status
        found = [(uid, 0, 0) for uid in users.ids()] if not onlysuspended else []
    else:
        ce = ds.enrolments[courseid]
        exists = users.exists
        found = [
            (u, r, a) for u, r, s, a in zip(ce.users, ce.roles, ce.status, ce.lastaccess)
            if exists(u) and (not onlyactive or s == ACTIVE) and (not onlysuspended or s != ACTIVE)
        ]
    if groupid:
        found = []  # no groups exist in the emulated site
    if course.groupmode == 1 and not ctx.can(ACCESS_ALL_GROUPS):
        found = []  # separate groups: only the caller's groups, and the caller is in none
    if sortby != "id" or sortdir == "DESC":
        fnc, lnc = users.firstname, users.lastname
        keyf = {
            "id": lambda r: r[0],
            "firstname": lambda r: (fnc[r[0] - 1], r[0]),
            "lastname": lambda r: (lnc[r[0] - 1], r[0]),
            "siteorder": lambda r: (lnc[r[0] - 1], fnc[r[0] - 1], r[0]),
        }[sortby]
        found.sort(key=keyf, reverse=sortdir == "DESC")
    limitfrom = max(limitfrom, 0)
    limitnumber = max(limitnumber, 0)
    if limitfrom or limitnumber:
        found = found[limitfrom:limitfrom + limitnumber] if limitnumber else found[limitfrom:]
    # after the LIMIT, user_get_user_details() drops the rows the token may not see: short pages
    found = [t for t in found if ctx.sees_user(t[0])]
    out = [] if ctx.empty_lists else rows(found, lambda t: enrolled_user(ctx, t[0], t[1], t[2], fields))
    return out, (len(out), fields)


def _course_users_courses(ctx: Ctx, c: Course, uid: int, lca: int, count: bool) -> dict:
    d = {"id": c.id, "shortname": format_string(c.shortname), "fullname": format_string(c.fullname),
         "displayname": format_string(c.fullname)}
    if count:
        d["enrolledusercount"] = ctx.ds.enrolled_count(c.id)
    d.update({
        "idnumber": c.idnumber, "visible": c.visible, "summary": c.summary, "summaryformat": c.summaryformat,
        "format": c.format,
        "courseimage": f"{ctx.url}/pluginfile.php/{c.contextid}/course/generated/course.svg",
        "showgrades": True, "lang": "", "enablecompletion": False, "completionhascriteria": False,
        "completionusertracked": False, "category": c.categoryid, "progress": None, "completed": None,
        "startdate": c.startdate, "enddate": c.enddate, "marker": 0, "lastaccess": lca or None,
        "isfavourite": False, "hidden": False, "overviewfiles": [], "showactivitydates": True,
        "showcompletionconditions": c.showcompletionconditions, "timemodified": c.timemodified,
    })
    return d


def get_users_courses(ctx: Ctx, args: dict):
    ds = ctx.ds
    uid = args["userid"]
    out = []
    if ds.users.exists(uid):
        picked = []
        for cid in ds.user_courses.get(uid, ()):
            c = ds.courses.get(cid)
            if c is None or cid == SITE_COURSE_ID:
                continue
            e = ds.enrolment(cid, uid)
            if e is None or e[1] != ACTIVE:
                continue
            if not c.visible and not e[0] & VIEW_HIDDEN_MASK:
                continue
            picked.append((c, e[2]))
        picked.sort(key=lambda p: (-p[0].visible, p[0].sortorder, p[0].id))
        out = [_course_users_courses(ctx, c, uid, lca, args["returnusercount"]) for c, lca in picked]
    if ctx.empty_lists:
        out = []
    return out, (len(out), ("enrolledusercount",) if args["returnusercount"] else None)


# ------------------------------------------------------------------ registry

FUNCTIONS = {
    "core_webservice_get_site_info": (
        Single({"serviceshortnames": Multiple(Value("alpha"), DEFAULT, list)}), site_info),
    "core_course_get_categories": (
        Single({"criteria": Multiple(Single({"key": Value("alpha"), "value": Value("raw")}), DEFAULT, list),
                "addsubcategories": Value("bool", DEFAULT, True)}), get_categories),
    "core_course_get_courses": (
        Single({"options": Single({"ids": Multiple(Value("int"), OPTIONAL)}, DEFAULT, dict)}), get_courses),
    "core_course_get_courses_by_field": (
        Single({"field": Value("alpha", DEFAULT, ""), "value": Value("raw", DEFAULT, "")}), get_courses_by_field),
    "core_user_get_users": (
        Single({"criteria": Multiple(Single({"key": Value("alpha"), "value": Value("raw")}))}), get_users),
    "core_user_get_users_by_field": (
        Single({"field": Value("alpha"), "values": Multiple(Value("raw"))}), get_users_by_field),
    "core_enrol_get_enrolled_users": (
        Single({"courseid": Value("int"),
                "options": Multiple(Single({"name": Value("alphanumext"), "value": Value("raw")}), DEFAULT, list)}),
        get_enrolled_users),
    "core_enrol_get_users_courses": (
        Single({"userid": Value("int"), "returnusercount": Value("bool", DEFAULT, True)}), get_users_courses),
}

LIST_FUNCTIONS = frozenset(FUNCTIONS) - {"core_webservice_get_site_info"}
