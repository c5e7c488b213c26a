"""Parameter parsing/validation and Moodle's error behaviour, over HTTP."""

from __future__ import annotations

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


# ------------------------------------------------------------------ PHP bracket arrays

def test_bracket_append_syntax(real):
    got = real.json("core_course_get_courses", [("options[ids][]", "6"), ("options[ids][]", "3")])
    assert [c["id"] for c in got] == [6, 3] or sorted(c["id"] for c in got) == [3, 6]


def test_non_contiguous_indexes_and_nested_lists(real):
    got = real.json("core_user_get_users_by_field", [("field", "id"), ("values[7]", "4"), ("values[2]", "3")])
    assert [u["id"] for u in got] == [3, 4]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(min_value=1, max_value=12), min_size=1, max_size=8))
def test_bracket_lists_roundtrip(real, course_ids):
    params = [(f"options[ids][{i * 3}]", str(c)) for i, c in enumerate(course_ids)]
    got = [c["id"] for c in real.json("core_course_get_courses", params)]
    assert sorted(got) == sorted({c for c in course_ids if c <= 7})


def test_get_and_post_mixed_post_wins(real):
    # token + function in the query string, arguments in the body
    r = requests.post(real.rest, params={"wstoken": real.token, "wsfunction": "core_enrol_get_users_courses",
                                         "moodlewsrestformat": "json", "userid": "15"},
                      data={"userid": "3"}, timeout=10)
    assert [c["id"] for c in r.json()] == [2, 3]
    # a bad token in GET is overridden by the good one in POST
    r = requests.post(real.rest, params={"wstoken": "bad"}, data={"wstoken": real.token,
                      "wsfunction": "core_webservice_get_site_info", "moodlewsrestformat": "json"}, timeout=10)
    assert r.json()["userid"] == 2
    # and the reverse: POST's bad token wins
    r = requests.post(real.rest, params={"wstoken": real.token}, data={"wstoken": "bad",
                      "wsfunction": "core_webservice_get_site_info", "moodlewsrestformat": "json"}, timeout=10)
    assert r.json()["errorcode"] == "invalidtoken"


def test_get_works_like_post(real):
    a = real.call("core_course_get_courses_by_field", {"field": "id", "value": "2"}, method="GET")
    b = real.call("core_course_get_courses_by_field", {"field": "id", "value": "2"})
    assert a.status_code == b.status_code == 200 and a.content == b.content


def test_json_request_body_is_not_understood(real):
    r = requests.post(real.rest, params={"wstoken": real.token, "wsfunction": "core_enrol_get_users_courses",
                                         "moodlewsrestformat": "json"}, json={"userid": 3}, timeout=10)
    assert r.json()["errorcode"] == "invalidparameter"


# ------------------------------------------------------------------ validation

def test_unexpected_top_level_key_rejected(real):
    assert real.json("core_webservice_get_site_info", {"_": "123"})["errorcode"] == "invalidparameter"
    assert real.json("core_enrol_get_enrolled_users", {"courseid": "2", "unexpected": "1"})["errorcode"] == "invalidparameter"


def test_unexpected_nested_key_rejected(real):
    body = real.json("core_enrol_get_enrolled_users", {"courseid": "2", "options[0][name]": "onlyactive",
                                                       "options[0][value]": "1", "options[0][extra]": "x"})
    assert body["errorcode"] == "invalidparameter"


def test_bool_accepts_only_0_and_1(real):
    for ok in ("0", "1"):
        assert isinstance(real.json("core_enrol_get_users_courses", {"userid": "3", "returnusercount": ok}), list)
    for bad in ("true", "false", "yes", "", "2", "01"):
        body = real.json("core_enrol_get_users_courses", {"userid": "3", "returnusercount": bad})
        assert body["errorcode"] == "invalidparameter", bad


def test_int_must_be_canonical(real):
    assert isinstance(real.json("core_enrol_get_enrolled_users", {"courseid": "7"}), list)
    for bad in ("05", "5.0", "", "abc", " 5", "+5", "2x"):
        body = real.json("core_enrol_get_enrolled_users", {"courseid": bad})
        assert body["errorcode"] == "invalidparameter", bad


def test_array_where_scalar_expected(real):
    assert real.json("core_enrol_get_enrolled_users", {"courseid[0]": "2"})["errorcode"] == "invalidparameter"


def test_option_values_are_raw_strings(real):
    rows = real.json("core_enrol_get_enrolled_users", {"courseid": "2", "options[0][name]": "onlyactive",
                                                       "options[0][value]": "true"})
    assert 11 not in [r["id"] for r in rows]


def test_moodlewssetting_params_are_reserved(real):
    info = real.json("core_webservice_get_site_info", {"moodlewssettingfilter": "true", "moodlewssettinglang": "de",
                                                       "moodlewssettingraw": "1"})
    assert info["userid"] == 2


# ------------------------------------------------------------------ errors and their order

def test_error_shape_45(real):
    r = real.call("core_webservice_get_site_info", token="nope")
    assert r.status_code == 200
    assert r.text == '{"exception":"core\\\\exception\\\\moodle_exception","errorcode":"invalidtoken",' \
                     '"message":"Invalid token - token not found"}'


def test_error_styles_44_vs_45(make_emu):
    old = make_emu(scale="real", exception_style="4.4")
    new = make_emu(scale="real", exception_style="4.5")
    cases = [
        ({"wsfunction": "core_webservice_get_site_info"}, "nope", "moodle_exception", "core\\exception\\moodle_exception"),
        ({"wsfunction": "core_enrol_get_enrolled_users"}, None, "invalid_parameter_exception",
         "core\\exception\\invalid_parameter_exception"),
        ({"wsfunction": "core_nope"}, None, "dml_missing_record_exception", "dml_missing_record_exception"),
        ({"wsfunction": "core_user_create_users"}, None, "webservice_access_exception", "webservice_access_exception"),
        ({"wsfunction": "core_enrol_get_enrolled_users", "courseid": "2", "options[0][name]": "onlyactive",
          "options[0][value]": "1", "options[1][name]": "onlysuspended", "options[1][value]": "1"}, None,
         "coding_exception", "core\\exception\\coding_exception"),
    ]
    for params, token, cls44, cls45 in cases:
        fn = params.pop("wsfunction")
        assert old.json(fn, params, token=token)["exception"] == cls44
        assert new.json(fn, params, token=token)["exception"] == cls45
    assert old.json("core_webservice_get_site_info")["release"].startswith("4.4")


def test_validation_order(real):
    # bad token beats unknown function and bad params
    assert real.json("core_nope", {"x": "1"}, token="bad")["errorcode"] == "invalidtoken"
    # unknown function beats bad params
    assert real.json("core_nope", {"x": "1"})["errorcode"] == "invalidrecordunknown"
    # function not in the service beats bad params
    assert real.json("core_course_create_courses", {"x": "1"})["errorcode"] == "accessexception"
    # then parameters
    assert real.json("core_enrol_get_enrolled_users", {"x": "1"})["errorcode"] == "invalidparameter"
    # missing wsfunction
    r = requests.post(real.rest, data={"wstoken": real.token, "moodlewsrestformat": "json"}, timeout=10)
    assert r.json()["errorcode"] == "invalidparameter"
    # no token at all
    r = requests.post(real.rest, data={"wsfunction": "core_webservice_get_site_info", "moodlewsrestformat": "json"},
                      timeout=10)
    assert r.json()["errorcode"] == "invalidtoken"


def test_debug_mode_adds_debuginfo(make_emu):
    dbg = make_emu(scale="real", debug=True)
    body = dbg.json("core_enrol_get_enrolled_users")
    assert body["debuginfo"] == "Missing required key in single structure: courseid"
    assert body["message"] == "Invalid parameter value detected (Missing required key in single structure: courseid)"
    body = dbg.json("core_nope")
    assert body["errorcode"] == "invalidrecord" and "external_functions" in body["debuginfo"]
    body = dbg.json("core_enrol_get_users_courses", {"userid": "3", "returnusercount": "true"})
    assert body["debuginfo"].startswith("returnusercount => Invalid parameter value detected (")
    assert "debuginfo" not in dbg.json("core_webservice_get_site_info", token="bad")


def test_no_debuginfo_without_debug(real):
    body = real.json("core_enrol_get_enrolled_users", {"courseid": "9999"})
    assert set(body) == {"exception", "errorcode", "message"}


def test_webservices_disabled_is_403_empty_before_token(real):
    assert real.faults({"webservices_disabled": True}).status_code == 200
    for token in (real.token, "bad"):
        r = real.call("core_webservice_get_site_info", token=token)
        assert r.status_code == 403 and r.content == b""
        assert r.headers["Content-type"].startswith("text/html")
    real.faults({})
    assert real.call("core_webservice_get_site_info").status_code == 200


def test_xml_error_without_format(real):
    r = real.call("core_webservice_get_site_info", token="bad", fmt=None)
    assert r.headers["Content-Type"] == "application/xml; charset=utf-8"
    assert '<EXCEPTION class="core\\exception\\moodle_exception">' in r.text
    assert "<ERRORCODE>invalidtoken</ERRORCODE>" in r.text


def test_unknown_path_is_404(real):
    assert requests.get(real.url + "/login/index.php", timeout=10).status_code == 404
