"""Every emulated web-service function, over HTTP, on the real-site and demo datasets."""

from __future__ import annotations

import pytest


def ids(rows):
    return [r["id"] for r in rows]


# ------------------------------------------------------------------ site info

def test_site_info_admin(real):
    info = real.json("core_webservice_get_site_info")
    assert info["userid"] == 2 and info["username"] == "admin"
    assert info["siteurl"] == real.url
    assert info["userissiteadmin"] is True
    assert [f["name"] for f in info["functions"]] == sorted(f["name"] for f in info["functions"])
    assert "core_enrol_get_enrolled_users" in {f["name"] for f in info["functions"]}
    assert info["release"].startswith("5.0.6")
    assert "userhomepageurl" not in info and "usersessionscount" not in info  # unset optionals omitted


def test_site_info_manager_is_not_site_admin(real):
    info = real.json("core_webservice_get_site_info", token=real.token + "-manager")
    assert info["userissiteadmin"] is False


def test_site_info_rejects_serviceshortnames_scalar(real):
    body = real.json("core_webservice_get_site_info", {"serviceshortnames": "x"})
    assert body["errorcode"] == "invalidparameter"
    ok = real.json("core_webservice_get_site_info", {"serviceshortnames[0]": "abc"})
    assert ok["userid"] == 2


# ------------------------------------------------------------------ categories

def test_categories_all_sorted_with_nesting_and_escaping(real):
    cats = real.json("core_course_get_categories")
    assert ids(cats) == [1, 2, 3, 4]
    assert cats[0]["idnumber"] is None
    web = cats[2]
    assert (web["parent"], web["depth"], web["path"]) == (2, 2, "/2/3")
    assert cats[3]["name"] == "Languages &amp; Culture"
    assert [c["coursecount"] for c in cats] == [0, 2, 2, 2]


def test_categories_criteria(real):
    top = real.json("core_course_get_categories", {"criteria[0][key]": "parent", "criteria[0][value]": "0",
                                                    "addsubcategories": "0"})
    assert ids(top) == [1, 2, 4]
    with_sub = real.json("core_course_get_categories", {"criteria[0][key]": "id", "criteria[0][value]": "2"})
    assert ids(with_sub) == [2, 3]
    by_ids = real.json("core_course_get_categories", {"criteria[0][key]": "ids", "criteria[0][value]": "4,1",
                                                       "addsubcategories": "0"})
    assert ids(by_ids) == [1, 4]
    bad = real.json("core_course_get_categories", {"criteria[0][key]": "colour", "criteria[0][value]": "x"})
    assert bad["errorcode"] == "criteriaerror"


def test_categories_sorted_by_sortorder_as_strings(demo_emu, demo):
    cats = demo.json("core_course_get_categories")
    orders = [str(c["sortorder"]) for c in cats]
    assert orders == sorted(orders)
    assert any(c["depth"] >= 3 for c in cats) or any(c["depth"] == 2 for c in cats)
    assert len(cats) == len(demo_emu.dataset.categories)


def test_categories_reader_tier_hides_manage_fields(real):
    cats = real.json("core_course_get_categories", token=real.token + "-reader")
    assert "idnumber" not in cats[0] and "timemodified" not in cats[0] and "visible" not in cats[0]
    assert list(cats[0])[:2] == ["id", "name"]


# ------------------------------------------------------------------ courses

def test_get_courses_site_course_hidden_course_and_customfields(real):
    courses = real.json("core_course_get_courses")
    assert ids(courses) == [1, 2, 6, 3, 4, 5, 7]
    site = courses[0]
    assert site["format"] == "site" and site["categoryid"] == 0 and "hiddensections" not in site
    hidden = next(c for c in courses if c["id"] == 6)
    assert hidden["visible"] == 0
    for c in courses:
        assert [f["shortname"] for f in c["customfields"]] == ["price", "currency", "pricetext", "internalcode"]
    price = {c["id"]: c["customfields"][0]["valueraw"] for c in courses}
    assert price == {1: None, 2: 49.9, 3: 0, 4: 1234.5, 5: None, 6: 99, 7: None}
    assert isinstance(price[6], int)


def test_get_courses_by_ids_and_unknown_ids(real):
    assert ids(real.json("core_course_get_courses", {"options[ids][0]": "6", "options[ids][1]": "2",
                                                     "options[ids][2]": "999"})) == [2, 6]


def test_get_courses_reader_tier(real):
    courses = real.json("core_course_get_courses", token=real.token + "-reader")
    assert 6 not in ids(courses)  # hidden course
    c = courses[1]
    for key in ("idnumber", "visible", "timemodified", "categorysortorder", "courseformatoptions"):
        assert key not in c
    assert "internalcode" not in [f["shortname"] for f in c["customfields"]]  # teachers-only field


def test_courses_by_field_variants(real):
    allc = real.json("core_course_get_courses_by_field")
    assert ids(allc["courses"]) == [1, 2, 3, 4, 5, 6, 7] and allc["warnings"] == []
    one = real.json("core_course_get_courses_by_field", {"field": "id", "value": "2"})["courses"][0]
    assert [c["fullname"] for c in one["contacts"]] == ["Dana Dual", "Tina Teacher"]
    assert one["enrollmentmethods"] == ["manual", "self"]
    assert ids(real.json("core_course_get_courses_by_field", {"field": "ids", "value": "6,2,99"})["courses"]) == [2, 6]
    assert ids(real.json("core_course_get_courses_by_field", {"field": "category", "value": "3"})["courses"]) == [3, 4]
    assert ids(real.json("core_course_get_courses_by_field", {"field": "idnumber", "value": "EXT-DE/A1"})["courses"]) == [5]
    sn = real.json("core_course_get_courses_by_field", {"field": "shortname", "value": "DE-A1"})["courses"][0]
    assert sn["fullname"] == "Deutsch f\u00fcr Anf\u00e4nger \u2013 Caf\u00e9 &amp; Stra\u00dfe"
    assert real.json("core_course_get_courses_by_field", {"field": "id", "value": "9999"}) == {"courses": [], "warnings": []}
    bad = real.json("core_course_get_courses_by_field", {"field": "nonsense", "value": "1"})
    assert bad["errorcode"] == "invalidparameter"


def test_demo_courses_have_awkward_prices_and_escaped_names(demo_emu, demo):
    courses = demo.json("core_course_get_courses_by_field")["courses"]
    ds = demo_emu.dataset
    assert len(courses) == len(ds.courses)
    raws = [f["valueraw"] for c in courses for f in c["customfields"] if f["shortname"] == "price"]
    assert None in raws and any(isinstance(v, (int, float)) and v > 0 for v in raws) and 0 in raws
    names = [c["fullname"] for c in courses]
    assert any("&amp;" in n for n in names) and not any("& " in n for n in names)
    assert any(c["visible"] == 0 for c in courses)


def test_text_price_field(make_emu):
    c = make_emu(scale="demo", seed=3, price_type="text")
    courses = c.json("core_course_get_courses")
    prices = [f for co in courses for f in co["customfields"] if f["shortname"] == "price"]
    assert all(p["type"] == "text" and isinstance(p["valueraw"], str) for p in prices)
    assert any("," in p["valueraw"] for p in prices) and any(p["valueraw"] == "" for p in prices)


# ------------------------------------------------------------------ users

def test_get_users_email_wildcard_skips_empty_email(real):
    body = real.json("core_user_get_users", {"criteria[0][key]": "email", "criteria[0][value]": "%"})
    assert ids(body["users"]) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15]
    assert body["users"][6]["suspended"] is True
    assert body["warnings"] == []


def test_get_users_like_and_case_insensitive(real):
    body = real.json("core_user_get_users", {"criteria[0][key]": "email", "criteria[0][value]": "URSULA.upper@example.com"})
    assert ids(body["users"]) == [6]
    body = real.json("core_user_get_users", [("criteria[0][key]", "lastname"), ("criteria[0][value]", "%er"),
                                             ("criteria[1][key]", "firstname"), ("criteria[1][value]", "J_s%")])
    assert ids(body["users"]) == [5]


def test_get_users_invalid_key_warns_and_returns_everyone(real):
    body = real.json("core_user_get_users", {"criteria[0][key]": "bogus", "criteria[0][value]": "x"})
    assert len(body["users"]) == 15
    assert body["warnings"][0]["warningcode"] == "invalidfieldparameter"


def test_get_users_repeated_key_and_no_criteria(real):
    body = real.json("core_user_get_users", [("criteria[0][key]", "id"), ("criteria[0][value]", "3"),
                                             ("criteria[1][key]", "id"), ("criteria[1][value]", "4")])
    assert body["errorcode"] == "keyalreadyset"
    assert real.json("core_user_get_users")["errorcode"] == "invalidparameter"


def test_get_users_reader_tier_hides_viewalldetails_fields(real):
    body = real.json("core_user_get_users", {"criteria[0][key]": "id", "criteria[0][value]": "3"},
                     token=real.token + "-reader")
    u = body["users"][0]
    for key in ("username", "auth", "confirmed", "lang", "idnumber", "mailformat"):
        assert key not in u
    assert u["suspended"] is False and u["email"] == "alice@example.com"


def test_users_by_field(real):
    got = real.json("core_user_get_users_by_field", {"field": "email", "values[0]": "Ursula.Upper@Example.COM",
                                                     "values[1]": "ursula.upper@example.com",
                                                     "values[2]": "alice@example.com", "values[3]": "nobody@x"})
    assert ids(got) == [3, 6]
    assert ids(real.json("core_user_get_users_by_field", {"field": "id", "values[0]": "14", "values[1]": "9999",
                                                          "values[2]": "1"})) == [1, 14]
    assert ids(real.json("core_user_get_users_by_field", {"field": "username", "values[0]": "loner"})) == [15]
    bad = real.json("core_user_get_users_by_field", {"field": "city", "values[0]": "x"})
    assert bad["errorcode"] == "codingerror"
    assert real.json("core_user_get_users_by_field", {"field": "id", "values[0]": "5x"})["errorcode"] == "invalidparameter"


# ------------------------------------------------------------------ enrolled users

def test_enrolled_users_plain_roles_and_lastcourseaccess(real):
    rows = real.json("core_enrol_get_enrolled_users", {"courseid": "2"})
    assert ids(rows) == list(range(3, 15))
    dual = next(r for r in rows if r["id"] == 9)
    assert [x["shortname"] for x in dual["roles"]] == ["editingteacher", "student"]
    assert all(x["name"] == "" for r in rows for x in r["roles"])
    assert next(r for r in rows if r["id"] == 6)["lastcourseaccess"] == 0
    assert all("suspended" not in r for r in rows)


def test_enrolled_users_active_and_suspended_split(real):
    active = ids(real.json("core_enrol_get_enrolled_users", {"courseid": "2", "options[0][name]": "onlyactive",
                                                             "options[0][value]": "1"}))
    susp = ids(real.json("core_enrol_get_enrolled_users", {"courseid": "2", "options[0][name]": "onlysuspended",
                                                           "options[0][value]": "1"}))
    assert 7 in active  # suspended *account* stays
    assert susp == [10, 11, 12]
    assert sorted(active + susp) == list(range(3, 15))
    both = real.json("core_enrol_get_enrolled_users", [("courseid", "2"), ("options[0][name]", "onlyactive"),
                                                       ("options[0][value]", "1"), ("options[1][name]", "onlysuspended"),
                                                       ("options[1][value]", "1")])
    assert both["errorcode"] == "codingerror"
    zero = ids(real.json("core_enrol_get_enrolled_users", {"courseid": "2", "options[0][name]": "onlyactive",
                                                           "options[0][value]": "0"}))
    assert zero == list(range(3, 15))


def test_enrolled_users_pagination(real):
    seen = []
    start = 0
    while True:
        page = real.json("core_enrol_get_enrolled_users", [("courseid", "2"), ("options[0][name]", "limitfrom"),
                                                           ("options[0][value]", str(start)),
                                                           ("options[1][name]", "limitnumber"), ("options[1][value]", "5")])
        seen += ids(page)
        if len(page) < 5:
            break
        start += 5
    assert seen == list(range(3, 15))


def test_enrolled_users_userfields_and_sorting(real):
    rows = real.json("core_enrol_get_enrolled_users", {"courseid": "2", "options[0][name]": "userfields",
                                                       "options[0][value]": "id,lastcourseaccess,roles"})
    assert all(list(r) == ["id", "fullname", "lastcourseaccess", "roles"] for r in rows)
    bad = real.json("core_enrol_get_enrolled_users", {"courseid": "2", "options[0][name]": "userfields",
                                                      "options[0][value]": "id,shoesize"})
    assert bad["errorcode"] == "invaliduserfield"
    by_last = real.json("core_enrol_get_enrolled_users", [("courseid", "2"), ("options[0][name]", "sortby"),
                                                          ("options[0][value]", "lastname"),
                                                          ("options[1][name]", "sortdirection"),
                                                          ("options[1][value]", "DESC")])
    lastnames = [r["lastname"] for r in by_last]
    assert lastnames == sorted(lastnames, reverse=True)
    bad = real.json("core_enrol_get_enrolled_users", {"courseid": "2", "options[0][name]": "sortby",
                                                      "options[0][value]": "lastaccess"})
    assert bad["errorcode"] == "invalidparameter"


def test_enrolled_users_site_course_and_unknown_course(real):
    rows = real.json("core_enrol_get_enrolled_users", {"courseid": "1"})
    assert ids(rows) == list(range(1, 16)) and all(r["roles"] == [] for r in rows)
    err = real.json("core_enrol_get_enrolled_users", {"courseid": "4242"})
    assert (err["exception"], err["errorcode"]) == ("dml_missing_record_exception", "invalidrecordunknown")
    assert real.json("core_enrol_get_enrolled_users", {"courseid": "7"}) == []


def test_enrolled_users_reader_cannot_split_by_status(real):
    err = real.json("core_enrol_get_enrolled_users", {"courseid": "2", "options[0][name]": "onlyactive",
                                                      "options[0][value]": "1"}, token=real.token + "-reader")
    assert err["errorcode"] == "nopermissions"


def test_demo_enrolled_users_match_dataset(demo_emu, demo):
    ds = demo_emu.dataset
    cid = max((c for c in ds.enrolments if c != 1), key=lambda c: len(ds.enrolments[c]))
    rows = demo.json("core_enrol_get_enrolled_users", {"courseid": str(cid), "options[0][name]": "userfields",
                                                       "options[0][value]": "id,roles"})
    expected = [u for u in ds.enrolments[cid].users if ds.users.exists(u)]
    assert ids(rows) == expected


# ------------------------------------------------------------------ users' courses

def test_users_courses(real):
    alice = real.json("core_enrol_get_users_courses", {"userid": "3"})
    assert ids(alice) == [2, 3]  # hidden course 6 not listed for a student
    assert alice[0]["enrolledusercount"] == 12 and alice[0]["lastaccess"] == 1795706598
    assert alice[0]["showgrades"] is True
    jose = real.json("core_enrol_get_users_courses", {"userid": "5"})
    assert ids(jose) == [2, 5] and jose[1]["lastaccess"] is None  # suspended JS201 enrolment omitted
    teacher = real.json("core_enrol_get_users_courses", {"userid": "8", "returnusercount": "0"})
    assert ids(teacher) == [2, 3, 6] and "enrolledusercount" not in teacher[0]
    assert real.json("core_enrol_get_users_courses", {"userid": "15"}) == []
    assert real.json("core_enrol_get_users_courses", {"userid": "9999"}) == []


@pytest.mark.parametrize("fmt", [None, "xml"])
def test_xml_when_format_is_not_json(real, fmt):
    r = real.call("core_enrol_get_users_courses", {"userid": "3"}, fmt=fmt)
    assert r.headers["Content-Type"].startswith("application/xml")
    assert r.text.startswith('<?xml version="1.0" encoding="UTF-8" ?>\n<RESPONSE>\n<MULTIPLE>')
    assert '<KEY name="shortname"><VALUE>PY101</VALUE>' in r.text


def test_php_json_escaping_on_the_wire(real):
    r = real.call("core_course_get_courses_by_field", {"field": "id", "value": "5"})
    assert r.headers["Content-type"] == "application/json"
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert "EXT-DE\\/A1" in r.text and "\\u00fc" in r.text and "http:\\/\\/" in r.text
    assert "\u00fc" not in r.text
