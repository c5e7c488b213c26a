"""Seeded dataset generator: ``build_dataset(scale, seed)``.

Scales (targets; the exact numbers depend on the seed, see ``SCALES``):

=====  ==========  =======  ===========  =================================
scale  categories  courses  users        enrolments (course, user) pairs
=====  ==========  =======  ===========  =================================
real   4           6 (+site) 15          22  (the real capture site)
demo   9           36       200          ~1,100
S      12          50       1,000        ~5,000
M      40          500      20,000       ~100,000
L      120         2,000    100,000      ~1,000,000
=====  ==========  =======  ===========  =================================

Awkward cases included at every generated scale: nested categories (depth 3), a hidden
category (S and up), hidden courses, an empty course, prices as JSON numbers / null (or,
with ``price_type="text"``, strings with decimal commas, thousands separators, blanks and
spaces), a lowercase or blank ``currency``, suspended users, users with empty or
mixed-case emails, non-ASCII names, ``&`` in course/category names, several roles in
one course, suspended / expired / not-yet-started enrolments, users with no enrolments,
deleted users (id gaps), the guest (id 1) and admin (id 2) accounts.
"""

from __future__ import annotations

import random
import unicodedata
from array import array

from .dataset import (ACTIVE, DELETED, EXPIRED, FUTURE, ROLE_BITS, SUSPENDED, Category, Course, CustomField,
                      Dataset, SiteConfig)

SCALES = {
    # categories, courses, users, enrolments, sitename
    "empty": (0, 0, 0, 0, "Empty site (emulated)"),  # the CLI's fixed cost (benchmarks --fixed-cost)
    "demo": (9, 36, 200, 1100, "Riverside Community School"),
    "S": (12, 50, 1000, 5000, "Moodle S (emulated)"),
    "M": (40, 500, 20000, 100000, "Moodle M (emulated)"),
    "L": (120, 2000, 100000, 1000000, "Moodle L (emulated)"),
}
PRICE_TYPES = ("number", "text", "none")
NOW = 1795700000  # generated data is anchored here (late Nov 2026), not to the wall clock
DAY = 86400

TOP_CATEGORIES = [
    "Sciences", "Languages & Culture", "Mathematics", "Arts & Music", "Humanities", "Technology",
    "Sports & Health", "Business & Economics", "Vocational Training", "Adult Education", "Teacher Training",
    "Étude & Recherche",
]
SUB_CATEGORIES = [
    "Year 7", "Year 8", "Year 9", "Year 10", "Beginners", "Intermediate", "Advanced", "Evening classes",
    "Online", "Workshops", "Summer school", "Projects & Labs", "Förderkurse", "Électifs",
]
SUBJECTS = [
    ("BIO", "Biology"), ("CHE", "Chemistry"), ("PHY", "Physics"), ("MAT", "Mathematics"), ("ALG", "Algebra & Geometry"),
    ("HIS", "History"), ("GEO", "Geography"), ("ENG", "English Literature"), ("FRA", "Français"),
    ("DEU", "Deutsch für Anfänger"), ("ESP", "Español – nivel básico"), ("ITA", "Italiano"),
    ("JPN", "日本語入門"), ("GRE", "Ελληνικά"), ("MUS", "Music & Rhythm"), ("ART", "Art & Design"),
    ("CS", "Computer Science"), ("PRG", "Programming in Python"), ("WEB", "HTML & CSS"), ("ECO", "Economics"),
    ("BUS", "Business Studies"), ("PE", "Physical Education"), ("PSY", "Psychology"), ("PHI", "Philosophy"),
    ("CAF", "Café & Cuisine"), ("NOR", "Norsk for nybegynnere"),
]
LEVELS = ["I", "II", "III", "101", "201", "Basics", "Advanced", "Lab", "Project", "Revision"]
FIRST = [
    "Alice", "Bob", "Carla", "David", "Emma", "Felix", "Grace", "Hugo", "Ines", "Jonas", "Karin", "Liam",
    "Mia", "Noah", "Olivia", "Paul", "Quinn", "Rosa", "Sam", "Tara", "Uma", "Victor", "Wen", "Yusuf", "Zoë",
    "José", "Łukasz", "Siobhán", "Ørjan", "Ana María", "François", "Dvořák", "Søren", "Ayşe", "Nguyễn",
    "Chloé", "Björn", "Renée", "Mateo", "Priya", "Kenji", "Olga", "Fatima", "Hannah", "Ivan", "Lea",
]
LAST = [
    "Anderson", "Brown", "Clarke", "Dubois", "Evans", "Fischer", "García", "Hansen", "Ivanova", "Jensen",
    "Kowalski", "López", "Müller", "Nakamura", "O'Connor", "Petrović", "Quintero", "Rossi", "Schmidt",
    "Tanaka", "Umarov", "Virtanen", "Wójcik", "Xu", "Yılmaz", "Zimmermann", "García-López", "Ångström",
    "D'Arcy", "Ó Briain", "Weiß", "Çelik", "Smith", "Jones", "Taylor", "Martin", "Bernard", "Novák",
]
CITIES = [("Berlin", "DE"), ("Zürich", "CH"), ("Paris", "FR"), ("Wien", "AT"), ("London", "GB"),
          ("Kraków", "PL"), ("Madrid", "ES"), ("Oslo", "NO"), ("Dublin", "IE"), ("São Paulo", "BR"),
          ("Montréal", "CA"), ("Tokyo", "JP"), ("", "")]
NUMBER_PRICES = [9.99, 19.9, 25, 29, 49.9, 75.5, 99, 120, 249.5, 480, 1234.5, 1999.99]
TEXT_PRICES = ["49.90", "49,90", "1.234,50", "1,234.50", " 120 ", "99", "0", "0.00", "19,9", "250.-",
               "EUR 35", "1234.5", "", "  "]


def _ascii(s: str) -> str:
    s = unicodedata.normalize("NFKD", s)
    s = "".join(ch for ch in s if not unicodedata.combining(ch))
    s = s.replace("ø", "o").replace("Ø", "O").replace("ł", "l").replace("Ł", "L").replace("ß", "ss")
    s = s.replace("ı", "i")
    return "".join(ch for ch in s.lower() if ch.isascii() and (ch.isalnum()))


def build_dataset(scale: str, seed: int = 42, price_type: str = "number") -> Dataset:
    """Build a named dataset: ``real`` (the capture site) or a generated scale."""
    if scale == "real":
        from .realsite import real_dataset
        return real_dataset()
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of real, {', '.join(SCALES)}")
    if price_type not in PRICE_TYPES:
        raise ValueError(f"price_type must be one of {PRICE_TYPES}")
    n_cats, n_courses, n_users, n_enrol, sitename = SCALES[scale]
    rng = random.Random(f"moodle-emulator:{scale}:{seed}")
    site = SiteConfig(sitename=sitename, themerev=NOW - 51, privatekey=f"{rng.getrandbits(128):032x}",
                      enrolments_synced=str(NOW - 78), site_timecreated=NOW - 400 * DAY)
    ds = Dataset(scale, seed, NOW, site)

    # ---------------------------------------------------------------- custom fields
    if price_type == "number":
        ds.customfields.append(CustomField("price", "Price", "number", 2, 2))
    elif price_type == "text":
        ds.customfields.append(CustomField("price", "Price", "text", 2))
    ds.customfields += [
        CustomField("currency", "Currency", "text", 2),
        CustomField("pricetext", "Price (free text)", "text", 2),
        CustomField("internalcode", "Internal code", "text", 1),
    ]

    # ---------------------------------------------------------------- categories (a tree)
    parents: dict[int, int] = {1: 0}
    names: dict[int, str] = {1: "Category 1"}
    n_top = max(3, min(len(TOP_CATEGORIES), n_cats // 3))
    next_id = 2
    tops = []
    for i in range(n_top):
        cid = next_id
        next_id += 1
        parents[cid] = 0
        names[cid] = TOP_CATEGORIES[i] if i < len(TOP_CATEGORIES) else f"Faculty {i + 1}"
        tops.append(cid)
    level2: list[int] = []
    while next_id <= n_cats:
        # mostly children of top categories, some grandchildren (depth 3)
        if level2 and rng.random() < 0.3:
            parent = rng.choice(level2)
        else:
            parent = rng.choice(tops)
        cid = next_id
        next_id += 1
        parents[cid] = parent
        names[cid] = f"{SUB_CATEGORIES[(cid * 7) % len(SUB_CATEGORIES)]}" + (f" {cid}" if cid > len(SUB_CATEGORIES) else "")
        if parents[parent] == 0:
            level2.append(cid)
    children: dict[int, list[int]] = {}
    for cid, p in parents.items():
        children.setdefault(p, []).append(cid)
    order: list[int] = []

    def walk(p: int, path: str, depth: int) -> None:
        for cid in sorted(children.get(p, [])):
            cpath = f"{path}/{cid}"
            order.append(cid)
            ds.add_category(Category(
                id=cid, name=names[cid], idnumber=None if cid == 1 else f"CAT-{cid:03d}",
                description="" if cid % 3 else f"<p>{names[cid]} courses</p>", descriptionformat=1 if cid % 3 == 0 else 0,
                parent=p, sortorder=0, timemodified=NOW - rng.randint(30, 300) * DAY, depth=depth, path=cpath))
            walk(cid, cpath, depth + 1)

    walk(0, "", 1)
    for pos, cid in enumerate(order, start=1):
        ds.categories[cid].sortorder = pos * 10000
    if n_cats >= 12:
        hidden = ds.categories[order[-1]]
        hidden.visible = hidden.visibleold = 0
    course_cats = [c for c in order if c != 1] or [1]

    # ---------------------------------------------------------------- courses
    ds.add_course(Course(
        id=1, shortname=_ascii(sitename)[:15] or "moodle", fullname=sitename, categoryid=0, idnumber="", summary="",
        summaryformat=0, format="site", visible=1, startdate=0, enddate=0, timecreated=site.site_timecreated,
        timemodified=site.site_timecreated + 35, sortorder=1, contextid=2, cacherev=NOW - 51, customvalues={},
        enrolmethods=(), newsitems=3, numsections=1, showcompletionconditions=None))
    used_short: set[str] = set()
    for k in range(n_courses):
        cid = k + 2
        code, subject = SUBJECTS[rng.randrange(len(SUBJECTS))]
        level = LEVELS[rng.randrange(len(LEVELS))]
        short = f"{code}{100 + k}"
        while short in used_short:
            short += "X"
        used_short.add(short)
        cat = 1 if k % 17 == 16 else course_cats[rng.randrange(len(course_cats))]
        r = rng.random()
        idnumber = "" if r < 0.1 else (f"EXT-{code}/{k}" if r < 0.15 else f"CRS-{cid:05d}")
        start = 0 if rng.random() < 0.2 else NOW + rng.randint(-300, 60) * DAY
        end = 0 if (start == 0 or rng.random() < 0.5) else start + rng.randint(30, 300) * DAY
        summary_kind = rng.random()
        if summary_kind < 0.5:
            summary, sfmt = f"<p>{subject} – {level}: learn &amp; practise.</p>", 1
        elif summary_kind < 0.8:
            summary, sfmt = f"{subject} ({level})", 1
        else:
            summary, sfmt = "", 0
        values: dict = {}
        pr = rng.random()
        price = None
        if price_type == "number":
            if pr < 0.45:
                price = NUMBER_PRICES[rng.randrange(len(NUMBER_PRICES))]
            elif pr < 0.55:
                price = 0
            if price is not None:
                values["price"] = price
        elif price_type == "text":
            if pr < 0.6:
                price = TEXT_PRICES[rng.randrange(len(TEXT_PRICES))]
                values["price"] = price
        cr = rng.random()
        if price not in (None, "") or cr < 0.1:
            values["currency"] = "EUR" if cr < 0.5 else "USD" if cr < 0.75 else "GBP" if cr < 0.85 else "eur" if cr < 0.9 else ""
        if price not in (None, "") and rng.random() < 0.5:
            if isinstance(price, str):
                values["pricetext"] = price.strip()
            else:
                values["pricetext"] = f"{price:,.2f}".replace(",", "X").replace(".", ",").replace("X", ".") + " €"
        if rng.random() < 0.3:
            values["internalcode"] = f"INT-{cid:04d}"
        methods = ("manual",)
        mr = rng.random()
        if price not in (None, "", 0) and mr < 0.4:
            methods = ("manual", "fee")
        elif mr < 0.2:
            methods = ("manual", "self")
        created = NOW - rng.randint(20, 380) * DAY
        ds.add_course(Course(
            id=cid, shortname=short, fullname=f"{subject} {level}", categoryid=cat, idnumber=idnumber,
            summary=summary, summaryformat=sfmt, format="topics", visible=0 if (k % 16 == 7 or rng.random() < 0.04) else 1,
            startdate=start, enddate=end, timecreated=created, timemodified=created + rng.randint(0, 15) * DAY,
            sortorder=0, contextid=20 + 2 * cid, cacherev=NOW - 49, customvalues=values, enrolmethods=methods))
    # sortorder: category sortorder + position, the newest course first (like Moodle)
    by_cat: dict[int, list[int]] = {}
    for c in ds.courses.values():
        if c.id != 1:
            by_cat.setdefault(c.categoryid, []).append(c.id)
    for cat, ids in by_cat.items():
        for pos, cid in enumerate(sorted(ids, reverse=True), start=1):
            ds.courses[cid].sortorder = ds.categories[cat].sortorder + pos

    # ---------------------------------------------------------------- users
    u = ds.users
    u.add("guest", "Guest user", " ", "root@localhost",
          description="This user is a special user that allows read-only access to some courses.")
    u.add("admin", "Admin", "User", "admin@example.com", firstaccess=NOW - 400 * DAY, lastaccess=NOW - 3600)
    teacher_pool: list[int] = []
    student_pool: list[int] = []
    for uid in range(3, n_users + 1):
        fn = FIRST[rng.randrange(len(FIRST))]
        ln = LAST[rng.randrange(len(LAST))]
        username = f"{_ascii(fn)}.{_ascii(ln)}{uid}"
        er = rng.random()
        if er < 0.01:
            email = ""
        elif er < 0.11:
            email = f"{_ascii(fn).capitalize()}.{_ascii(ln).upper()}{uid}@Example.ORG"
        else:
            email = f"{username}@example.org"
        is_teacher = uid % 25 == 0
        idn = "" if rng.random() < 0.3 else (f"EMP-{uid:06d}" if is_teacher else f"STU-{uid:06d}")
        city, country = CITIES[rng.randrange(len(CITIES))] if rng.random() < 0.5 else ("", "")
        if rng.random() < 0.15:
            fa = la = 0
        else:
            fa = NOW - rng.randint(5, 700) * DAY
            la = min(NOW - 60, fa + rng.randint(0, NOW - fa))
        suspended = rng.random() < 0.02
        u.add(username, fn, ln, email, idnumber=idn, city=city, country=country, firstaccess=fa, lastaccess=la,
              suspended=suspended)
        if rng.random() < 0.003:
            u.flags[uid - 1] |= DELETED
            continue
        if is_teacher:
            teacher_pool.append(uid)
        elif rng.random() >= 0.05:  # 5% of users are never enrolled anywhere
            student_pool.append(uid)
    if not teacher_pool:
        teacher_pool = student_pool[:1]

    # ---------------------------------------------------------------- enrolments
    course_ids = [c for c in sorted(ds.courses) if c != 1]
    weights = [0.0 if i == len(course_ids) - 1 else rng.lognormvariate(0, 0.7) for i in range(len(course_ids))]
    total_w = sum(weights)
    n_teacher_rows = 0
    teacher_rows: dict[int, list[tuple[int, int]]] = {}
    for i, cid in enumerate(course_ids):
        if weights[i] == 0.0:
            continue  # one empty course
        picks = [(teacher_pool[rng.randrange(len(teacher_pool))], ROLE_BITS["editingteacher"])]
        if rng.random() < 0.3:
            picks.append((teacher_pool[rng.randrange(len(teacher_pool))], ROLE_BITS["teacher"]))
        teacher_rows[cid] = picks
        n_teacher_rows += len(picks)
    remaining = max(0, n_enrol - n_teacher_rows)
    st_bit = ROLE_BITS["student"]
    lastaccess = u.lastaccess
    for i, cid in enumerate(course_ids):
        if weights[i] == 0.0:
            continue
        size = min(len(student_pool), int(round(remaining * weights[i] / total_w)))
        chosen = rng.sample(student_pool, size) if size else []
        rows: dict[int, int] = {uid: st_bit for uid in chosen}
        for uid, bit in teacher_rows[cid]:
            rows[uid] = rows.get(uid, 0) | bit
        # a few students also hold a teacher role (several roles in one course)
        n_multi = size // 150 + (1 if chosen and rng.random() < 0.25 else 0)
        for uid in chosen[:n_multi]:
            rows[uid] |= ROLE_BITS["teacher"] if uid % 2 else ROLE_BITS["editingteacher"]
        ce = ds.enrolments[cid]
        for uid in sorted(rows):
            roles = rows[uid]
            sr = rng.random()
            if roles & st_bit:
                status = ACTIVE if sr < 0.90 else SUSPENDED if sr < 0.94 else EXPIRED if sr < 0.97 else FUTURE
            else:
                status = ACTIVE
            ula = lastaccess[uid - 1]
            lca = 0 if (ula == 0 or status == FUTURE or rng.random() < 0.3) else max(0, ula - rng.randint(0, 30) * DAY)
            ce.append_sorted(uid, roles, status, lca)
    ds.build_user_index()
    return ds


def compact_arrays_bytes(ds: Dataset) -> int:
    """Bytes held in the enrolment arrays (diagnostics for the scale benchmark)."""
    total = 0
    for ce in ds.enrolments.values():
        for a in (ce.users, ce.roles, ce.status, ce.lastaccess):
            total += a.buffer_info()[1] * a.itemsize
    for a in ds.user_courses.values():
        total += a.buffer_info()[1] * a.itemsize
    return total


__all__ = ["SCALES", "PRICE_TYPES", "build_dataset", "compact_arrays_bytes", "array"]
