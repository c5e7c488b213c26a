"""Baseline (a): the quick integration script most people would write first.

* ``requests`` with one keep-alive session, one request at a time, hand-written PHP bracket
  params; an HTTP-200 Moodle error body raises; a 429 sleeps ``Retry-After`` and retries
  (without that a rate-limited run simply crashes).
* Moodle calls: categories, ``core_course_get_courses`` (all), ``core_user_get_users``
  with ``email=%`` (every user in ONE request, all fields; users without an email are
  missed), and per course ``core_enrol_get_enrolled_users`` with all fields plus the same
  call with ``onlyactive=1`` to tell active from not (the plain + onlyactive pair; no paging).
* Writes: per-row ORM, query-then-insert/update by Moodle id, ``synced_at = now`` on every
  row (so a re-sync rewrites everything), one commit at the end. No deactivation.

It reuses the project's mappers and models so that the rows it writes are the same as the
project's (the comparison is about requests and write strategy, not about mapping code).
"""
from __future__ import annotations

import time
from typing import Any

import requests

from benchmarks.common import Emulator, WriteCounter, dump, peak_rss_mb, phase


class NaiveMoodle:
    def __init__(self, url: str, token: str):
        self.endpoint = url.rstrip("/") + "/webservice/rest/server.php"
        self.token = token
        self.session = requests.Session()
        self.requests = 0
        self.responses_429 = 0
        self.retry_wait_s = 0.0

    def call(self, wsfunction: str, **params: Any) -> Any:
        data = {"wstoken": self.token, "wsfunction": wsfunction, "moodlewsrestformat": "json", **params}
        for _ in range(20):
            self.requests += 1
            r = self.session.post(self.endpoint, data=data, timeout=300)
            if r.status_code == 429:
                self.responses_429 += 1
                wait = float(r.headers.get("Retry-After") or 1)
                self.retry_wait_s += wait
                time.sleep(wait)
                continue
            r.raise_for_status()
            body = r.json()
            if isinstance(body, dict) and "exception" in body:
                raise RuntimeError(f"{wsfunction}: {body.get('errorcode')}: {body.get('message')}")
            return body
        raise RuntimeError(f"{wsfunction}: still rate limited after 20 tries")


def sync(api: NaiveMoodle, Session) -> dict[str, int]:  # noqa: N803
    from moodle_assets import mappers
    from moodle_assets.store.models import CourseCatalog, CourseCategory, User, UserCourseEnrollment
    from moodle_assets.core.clock import utcnow

    now = utcnow()
    stats = {"inserted": 0, "updated_or_touched": 0, "rejected": 0, "unmatched": 0, "fetched": 0}

    def upsert(session, model, key: str, record) -> Any:
        values = record.as_dict() if hasattr(record, "as_dict") else record
        obj = session.query(model).filter_by(**{key: values[key]}).one_or_none()
        if obj is None:
            obj = model(**{k: v for k, v in values.items() if hasattr(model, k)})
            session.add(obj)
            stats["inserted"] += 1
        else:
            for k, v in values.items():
                if hasattr(model, k) and k != "id":
                    setattr(obj, k, v)
            stats["updated_or_touched"] += 1
        obj.synced_at = now
        return obj

    with Session() as session:
        for row in api.call("core_course_get_categories"):
            stats["fetched"] += 1
            try:
                upsert(session, CourseCategory, "moodle_category_id", mappers.map_moodle_category_row(row, synced_at=now))
            except mappers.RowRejected:
                stats["rejected"] += 1
        session.flush()
        categories = {c.moodle_category_id: c.id for c in session.query(CourseCategory)}
        courses = api.call("core_course_get_courses")
        for row in courses:
            stats["fetched"] += 1
            try:
                rec = mappers.map_moodle_course_row(row, synced_at=now).as_dict()
            except mappers.RowRejected:
                continue  # the site course
            rec["category_id"] = categories.get(rec["moodle_category_id"])
            upsert(session, CourseCatalog, "moodle_course_id", rec)
        answer = api.call("core_user_get_users", **{"criteria[0][key]": "email", "criteria[0][value]": "%"})
        for row in answer["users"]:
            stats["fetched"] += 1
            try:
                upsert(session, User, "moodle_user_id", mappers.map_moodle_user_row(row, synced_at=now))
            except mappers.RowRejected:
                stats["rejected"] += 1
        session.flush()
        users = {u.moodle_user_id: u.id for u in session.query(User)}
        local_courses = {c.moodle_course_id: c.id for c in session.query(CourseCatalog)}
        for row in courses:
            cid = row["id"]
            if cid not in local_courses:
                continue
            everyone = api.call("core_enrol_get_enrolled_users", courseid=cid)
            active = {u["id"] for u in api.call("core_enrol_get_enrolled_users", courseid=cid,
                                                 **{"options[0][name]": "onlyactive", "options[0][value]": 1})}
            for u in everyone:
                stats["fetched"] += 1
                try:
                    rec = mappers.map_moodle_enrollment_row(u, moodle_course_id=cid, is_active=u["id"] in active,
                                                            synced_at=now).as_dict()
                except mappers.RowRejected:
                    stats["rejected"] += 1
                    continue
                user_id = users.get(rec["moodle_user_id"])
                if user_id is None:
                    stats["unmatched"] += 1
                    continue
                obj = (session.query(UserCourseEnrollment)
                       .filter_by(user_id=user_id, course_id=local_courses[cid]).one_or_none())
                if obj is None:
                    session.add(UserCourseEnrollment(user_id=user_id, course_id=local_courses[cid], first_seen_at=now, **rec))
                    stats["inserted"] += 1
                else:
                    for k, v in rec.items():
                        setattr(obj, k, v)
                    obj.synced_at = now
                    stats["updated_or_touched"] += 1
        session.commit()
    return stats


def run(cfg: dict[str, Any]) -> dict[str, Any]:
    from sqlalchemy.orm import sessionmaker

    from moodle_assets import mappers  # noqa: F401  (imports before the RSS baseline)
    from moodle_assets.store.db import create_app_engine

    out: dict[str, Any] = {"approach": "naive", "rss_after_imports_mb": peak_rss_mb()}
    emulator = Emulator(cfg["url"])
    engine = create_app_engine(cfg["db_url"])
    writes = WriteCounter().attach(engine)
    Session = sessionmaker(engine)  # noqa: N806
    for name in ("full", "resync"):
        api = NaiveMoodle(cfg["url"], cfg["token"])
        writes.reset()
        with phase(emulator, out, name) as rec:
            stats = sync(api, Session)
        rec["counts"] = stats
        rec["rows_written"] = stats["inserted"] + stats["updated_or_touched"]
        rec["db_writes"] = writes.snapshot()
        rec["client"] = {"requests_total": api.requests, "responses_429": api.responses_429,
                         "retry_wait_seconds": round(api.retry_wait_s, 3)}
        dump(out, cfg["result"])  # a partial result survives a timeout in the next phase
    engine.dispose()
    return out
