"""The dataset of the real Moodle 5.0.6+ capture site (``tests/fixtures/real-moodle``).

Rebuilt by hand from that folder's README and the captured responses: same ids, names,
idnumbers, custom field values, enrolments, roles, statuses and timestamps. Replaying
each capture's request against an emulator loaded with ``real_dataset()`` gives the same
answer (see tests/emulator/test_fidelity.py).
"""

from __future__ import annotations

from .dataset import (ACTIVE, EXPIRED, FUTURE, ROLE_BITS, SUSPENDED, Category, Course, CustomField,
                      Dataset, SiteConfig)

NOW = 1795713850  # when the captures were taken (Thu, 26 Nov 2026 17:24 GMT)
T_SITE = 1795713717
T_DATA = 1795713798

ST = ROLE_BITS["student"]
ET = ROLE_BITS["editingteacher"]
NT = ROLE_BITS["teacher"]


def real_dataset() -> Dataset:
    site = SiteConfig(sitename="Test", release="5.0.6+ (Build: 20260403)", version="2025041406.11",
                      themerev=1795713799, admin_id=2, privatekey="907fbb718a296f30122dccebed4f20b4",
                      enrolments_synced="1795713772", site_timecreated=T_SITE)
    ds = Dataset("real", 0, NOW, site)

    ds.customfields = [
        CustomField("price", "Price", "number", 2, 2),
        CustomField("currency", "Currency", "text", 2),
        CustomField("pricetext", "Price (free text)", "text", 2),
        CustomField("internalcode", "Internal code", "text", 1),
    ]

    for cat in (
        Category(1, "Category 1", None, "", 1, 0, 10000, timemodified=T_SITE, depth=1, path="/1"),
        Category(2, "Programming", "CAT-ROOT", "<p>All programming courses</p>", 1, 0, 20000,
                 timemodified=T_DATA, depth=1, path="/2"),
        Category(3, "Web Development", "CAT-WEB", "Nested category", 1, 2, 30000,
                 timemodified=T_DATA, depth=2, path="/2/3"),
        Category(4, "Languages & Culture", "CAT-LANG", "", 0, 0, 40000, timemodified=T_DATA, depth=1, path="/4"),
    ):
        ds.add_category(cat)

    ds.add_course(Course(
        id=1, shortname="test", fullname="Test", categoryid=0, idnumber="", summary="", summaryformat=0,
        format="site", visible=1, startdate=0, enddate=0, timecreated=T_SITE, timemodified=1795713752,
        sortorder=1, contextid=2, cacherev=1795713799, customvalues={}, enrolmethods=(), newsitems=3,
        numsections=1, showcompletionconditions=None))

    def course(cid, short, full, cat, idnumber, summary, sfmt, start, end, sortorder, values,
               visible=1, methods=("manual",)):
        ds.add_course(Course(
            id=cid, shortname=short, fullname=full, categoryid=cat, idnumber=idnumber, summary=summary,
            summaryformat=sfmt, format="topics", visible=visible, startdate=start, enddate=end,
            timecreated=T_DATA, timemodified=T_DATA, sortorder=sortorder, contextid=12 + cid,
            cacherev=1795713801, customvalues=values, enrolmethods=methods))

    course(2, "PY101", "Python Basics", 2, "EXT-PY101", "<p>Learn <b>Python</b> &amp; have fun</p>", 1,
           1793121798, 1800897798, 20002,
           {"price": 49.9, "currency": "EUR", "pricetext": "49,90 \u20ac", "internalcode": "INT-001"},
           methods=("manual", "self"))
    course(3, "JS201", "Advanced JavaScript", 3, "EXT-JS201", "Plain summary", 1, 1794849798, 0, 30002,
           {"price": 0, "currency": "USD", "pricetext": "0"})
    course(4, "WEB100", "HTML & CSS for Beginners", 3, "", "", 0, 1795281798, 0, 30001,
           {"price": 1234.5, "currency": "USD", "pricetext": "1,234.50"})
    course(5, "DE-A1", "Deutsch f\u00fcr Anf\u00e4nger \u2013 Caf\u00e9 & Stra\u00dfe", 4, "EXT-DE/A1",
           "<p>Gr\u00fc\u00dfe aus M\u00fcnchen / \"quotes\"</p>", 1, 1795713798, 0, 40002, {})
    course(6, "HIDDEN1", "Hidden Draft Course", 2, "EXT-HIDDEN", "Not yet published", 1, 0, 0, 20001,
           {"price": 99, "currency": "EUR"}, visible=0)
    course(7, "EMPTY", "Empty Course", 4, "EXT-EMPTY", "Nobody enrolled", 1, 0, 0, 40001, {"currency": ""})

    u = ds.users
    u.add("guest", "Guest user", " ", "root@localhost",
          description="This user is a special user that allows read-only access to some courses.")
    u.add("admin", "Admin", "User", "admin@example.com")
    u.add("alice", "Alice", "Anderson", "alice@example.com", idnumber="EMP-001", city="Berlin", country="DE",
          firstaccess=1793114598, lastaccess=1795706598)
    u.add("bob", "Bob", "Brown", "bob@example.com", idnumber="EMP-002", firstaccess=1792257798, lastaccess=1794849798)
    u.add("jose.muller", "Jos\u00e9", "M\u00fcller", "jose.mueller@example.com", city="Z\u00fcrich", country="CH",
          firstaccess=1793121198, lastaccess=1795713198)
    u.add("upper", "Ursula", "Upper", "Ursula.Upper@Example.COM")
    u.add("suspended.user", "Sam", "Suspended", "sam.suspended@example.com", suspended=True)
    u.add("teacher1", "Tina", "Teacher", "tina.teacher@example.com", firstaccess=1793121738, lastaccess=1795713738)
    u.add("dualrole", "Dana", "Dual", "dana.dual@example.com", firstaccess=1792689798, lastaccess=1795281798)
    u.add("expired", "Eve", "Expired", "eve.expired@example.com")
    u.add("enrolsuspended", "Emil", "Enrolsuspended", "emil.es@example.com")
    u.add("future", "Finn", "Future", "finn.future@example.com")
    u.add("oconnor", "Siobh\u00e1n", "O'Connor", "siobhan.oconnor@example.com")
    u.add("noemailuser", "Nora", "Noemail", "")
    u.add("loner", "Lou", "Loner", "lou.loner@example.com")

    rows = [
        # course, user, roles, status, lastcourseaccess
        (2, 3, ST, ACTIVE, 1795706598), (2, 4, ST, ACTIVE, 1794849798), (2, 5, ST, ACTIVE, 1795713198),
        (2, 6, ST, ACTIVE, 0), (2, 7, ST, ACTIVE, 0), (2, 8, ET, ACTIVE, 1795713738),
        (2, 9, ET | ST, ACTIVE, 1795281798), (2, 10, ST, EXPIRED, 0), (2, 11, ST, SUSPENDED, 0),
        (2, 12, ST, FUTURE, 0), (2, 13, ST, ACTIVE, 0), (2, 14, ST, ACTIVE, 0),
        (3, 3, ST, ACTIVE, 1795454598), (3, 5, ST, SUSPENDED, 0), (3, 8, ET, ACTIVE, 0), (3, 9, NT, ACTIVE, 0),
        (4, 4, ST, ACTIVE, 0), (4, 6, ST, ACTIVE, 0),
        (5, 5, ST, ACTIVE, 0), (5, 13, ET, ACTIVE, 0),
        (6, 3, ST, ACTIVE, 0), (6, 8, ET, ACTIVE, 0),
    ]
    for cid, uid, roles, status, lca in rows:
        ds.enrolments[cid].append_sorted(uid, roles, status, lca)
    ds.build_user_index()
    return ds
