"""Moodle answers with malformed fields: every kind of field of every synced row type, broken
one per row. A small real-HTTP proxy in front of the emulator rewrites the JSON of chosen rows;
the syncs run through Dagster on PostgreSQL. Each broken row is rejected and counted, the run
still stores every good row (including real changes made in Moodle meanwhile), a rejected row's
stored copy is left exactly as it was (never deactivated), and once Moodle answers properly
again nothing is missing: rows lost = 0.
"""
from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from sqlalchemy import select

from production_stack import mutate, snapshot

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

BAD_OBJECT = {"unexpected": ["object"]}
# (wsfunction, field, malformed value): one row each
CATEGORY_BREAKS = [("name", BAD_OBJECT), ("depth", "deep"), ("path", 42)]
COURSE_BREAKS = [
    ("shortname", BAD_OBJECT), ("fullname", []), ("categoryid", "science"), ("summary", {"html": 1}),
    ("visible", "maybe"), ("startdate", "yesterday"), ("enddate", -5), ("customfields", "price=10"),
    ("idnumber", BAD_OBJECT), ("summaryformat", "html"), ("shortname", ""), ("fullname", "bad\x00nul"),
    ("customfields", [{"shortname": "price", "type": "number", "valueraw": "abc", "value": "abc"}]),
    ("customfields", [{"shortname": "currency", "type": "text", "valueraw": "EURO", "value": "EURO"},
                      {"shortname": "price", "type": "number", "valueraw": "10", "value": "10"}]),
]
USER_BREAKS = [
    # (an int in a text field is accepted as digits on purpose: PHP sends numeric usernames as ints)
    ("username", BAD_OBJECT), ("firstname", [1]), ("lastname", 5.5), ("email", ["a@example.org"]),
    ("suspended", "no"), ("lastaccess", "recently"), ("idnumber", {"a": 1}), ("lastaccess", 10**20),
]
ENROLMENT_BREAKS = [("roles", "student"), ("lastcourseaccess", "never"), ("roles", [{"shortname": 5}]),
                    ("roles", [{"shortname": "a,b"}]), ("id", "abc")]


class CorruptingProxy:
    """Forwards every request to the emulator; breaks one field of chosen rows on the way back."""

    def __init__(self, upstream: str, skip: dict[str, set[int]]):
        self.upstream, self.skip = upstream, skip
        self.broken: dict[str, list[tuple[int | None, str]]] = {"category": [], "course": [], "user": [], "enrolment": []}
        self._lock = threading.Lock()
        self._seen_courses: list[int] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type",)}
                r = requests.request(self.command, proxy.upstream + self.path, data=body, headers=headers, timeout=30)
                params = parse_qs(urlsplit(self.path).query)
                if body:
                    params.update(parse_qs(body.decode("utf-8", "replace")))
                content = r.content
                if r.status_code == 200 and "json" in r.headers.get("Content-Type", ""):
                    content = proxy.rewrite({k: v[-1] for k, v in params.items()}, content)
                self.send_response(r.status_code)
                self.send_header("Content-Type", r.headers.get("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _break(self, kind: str, rows: list, breaks: list) -> None:
        candidates = [r for r in rows if isinstance(r, dict) and r.get("id") not in self.skip.get(kind, set()) and r.get("id") != 1]
        for row, (field, value) in zip(candidates[1::2], breaks):  # every other row, one field each
            self.broken[kind].append((row.get("id"), field))
            row[field] = value

    def rewrite(self, params: dict, content: bytes) -> bytes:
        function = params.get("wsfunction")
        data = json.loads(content)
        with self._lock:
            if function == "core_course_get_categories" and isinstance(data, list):
                self._break("category", data, CATEGORY_BREAKS)
            elif function == "core_course_get_courses_by_field" and isinstance(data, dict):
                self._break("course", data.get("courses", []), COURSE_BREAKS)
            elif function == "core_user_get_users_by_field" and isinstance(data, list) and not self.broken["user"]:
                self._break("user", data, USER_BREAKS)
            elif (function == "core_enrol_get_enrolled_users" and isinstance(data, list) and data
                  and params.get("courseid") not in (None, "1") and "onlyactive" in json.dumps(params)):
                course = int(params["courseid"])
                index = len(self._seen_courses)
                if course not in self._seen_courses and index < len(ENROLMENT_BREAKS) and len(data) > 1:
                    self._seen_courses.append(course)
                    field, value = ENROLMENT_BREAKS[index]
                    self.broken["enrolment"].append((course, field))
                    data[-1][field] = value
        return json.dumps(data).encode()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def sync_all() -> dict:
    from moodle_assets.cli import main
    from moodle_assets.store.db import engine_for
    from moodle_assets.history import SyncHistory

    rows = {}
    for target in ("COURSE_CATALOG", "USER_DIRECTORY", "ENROLLMENTS"):
        main(["sync", "--target", target])
        rows[target] = SyncHistory(engine_for(os.environ["DATABASE_URL"])).recent(target=target, limit=1)[0]
    return rows


def by_moodle_id(engine, model, key: str) -> dict:
    from moodle_assets.store.db import transaction

    cols = [c for c in model.__table__.columns if c.name not in ("synced_at", "id")]
    with transaction(engine) as s:
        return {getattr(r, key): tuple(r) for r in s.execute(select(*cols)).all()}


def test_malformed_rows_are_rejected_and_counted_and_the_good_rows_stored(cli_deployment, monkeypatch):
    from moodle_assets.store.db import engine_for
    from moodle_assets.store.models import CourseCatalog, CourseCategory, User, UserCourseEnrollment

    emu = cli_deployment
    engine = engine_for(os.environ["DATABASE_URL"])
    first = sync_all()
    assert all(r.status == "SUCCESS" and r.rows_rejected == 0 for r in first.values())

    # Real changes in Moodle, to rows the proxy will leave alone.
    visible = [c.id for c in sorted(emu.dataset.courses.values(), key=lambda c: c.id) if c.id != 1 and c.visible]
    changed_courses = visible[:2]
    changed_users = [5, 6]
    mutate(emu, {"op": "hide_course", "course_id": changed_courses[0]},
           {"op": "set_course_price", "course_id": changed_courses[1], "price": 77},
           {"op": "suspend_user", "user_id": changed_users[0]},
           {"op": "set_user_email", "user_id": changed_users[1], "email": "new.address@example.org"})
    before = {
        "category": by_moodle_id(engine, CourseCategory, "moodle_category_id"),
        "course": by_moodle_id(engine, CourseCatalog, "moodle_course_id"),
        "user": by_moodle_id(engine, User, "moodle_user_id"),
    }
    enrolments_before = snapshot(engine)["user_course_enrollment"]

    with CorruptingProxy(emu.url, skip={"course": set(changed_courses), "user": set(changed_users)}) as proxy:
        monkeypatch.setenv("MOODLE_URL", proxy.url)
        rows = sync_all()
    monkeypatch.setenv("MOODLE_URL", emu.url)
    broken = proxy.broken
    assert [len(broken[k]) for k in ("category", "course", "user", "enrolment")] == \
        [len(CATEGORY_BREAKS), len(COURSE_BREAKS), len(USER_BREAKS), len(ENROLMENT_BREAKS)], broken

    # Every run succeeded and counted exactly the broken rows as rejected.
    assert {t: r.status for t, r in rows.items()} == dict.fromkeys(rows, "SUCCESS"), {t: r.error for t, r in rows.items()}
    assert rows["COURSE_CATALOG"].rows_rejected == len(CATEGORY_BREAKS) + len(COURSE_BREAKS)
    assert rows["USER_DIRECTORY"].rows_rejected == len(USER_BREAKS)
    assert rows["ENROLLMENTS"].rows_rejected == len(ENROLMENT_BREAKS)
    assert all(r.rows_deactivated == 0 for r in rows.values())
    # The good changes landed ...
    assert rows["COURSE_CATALOG"].rows_updated == 2 and rows["USER_DIRECTORY"].rows_updated == 2
    after = {
        "category": by_moodle_id(engine, CourseCategory, "moodle_category_id"),
        "course": by_moodle_id(engine, CourseCatalog, "moodle_course_id"),
        "user": by_moodle_id(engine, User, "moodle_user_id"),
    }
    for kind, changed in (("course", changed_courses), ("user", changed_users)):
        assert all(after[kind][i] != before[kind][i] for i in changed)
    # ... every rejected row's stored copy is untouched, and no row went missing.
    for kind in ("category", "course", "user"):
        assert set(after[kind]) == set(before[kind])
        for moodle_id, _field in broken[kind]:
            assert after[kind][moodle_id] == before[kind][moodle_id], (kind, moodle_id, _field)
        untouched = set(before[kind]) - {i for i, _ in broken[kind]} - set(changed_courses if kind == "course" else changed_users if kind == "user" else [])
        assert all(after[kind][i] == before[kind][i] for i in untouched)
    assert snapshot(engine)["user_course_enrollment"] == enrolments_before

    # Moodle answers properly again: the rejected rows are read, nothing is lost or left over.
    final = sync_all()
    assert all(r.status == "SUCCESS" and r.rows_rejected == 0 for r in final.values()), final
    assert all(r.rows_inserted == 0 and r.rows_deactivated == 0 for r in final.values())
    print(f"\nmalformed Moodle rows: rejected and counted {sum(len(v) for v in broken.values())} "
          f"({ {k: [f for _, f in v] for k, v in broken.items()} }); good rows stored, 0 lost")
