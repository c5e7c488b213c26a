"""Throughput of the mappers (rows per second), on synthetic rows shaped like real Moodle's.

    python -m benchmarks.bench_mappers [--rows 200000] [--repeat 3]
    python benchmarks/bench_mappers.py

The row shapes are copied from the real Moodle 5.0.6 captures (core_course_get_courses,
core_course_get_categories, core_user_get_users, core_enrol_get_enrolled_users), with
ids, names, prices and timestamps varied. A pool of 1,000 distinct rows is cycled to the
requested count (the mappers cache nothing, so reuse does not flatter them and memory
stays small). Reports the best of --repeat runs per mapper.
"""
from __future__ import annotations

import argparse
import gc
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moodle_assets import mappers as m  # noqa: E402

POOL = 1000
SYNCED = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
PRICES = [49.9, 0, 1234.5, None, 99, "19,90", "1.234,50", "", 12.5, 7]
CURRENCIES = ["EUR", "USD", "", "chf", "EUR", "EUR", "EUR", "", "GBP", "USD"]


def course_row(i: int) -> dict:
    return {
        "id": 2 + i, "shortname": f"C{i}", "categoryid": 2 + i % 7, "categorysortorder": 20002,
        "fullname": f"Course {i} &amp; friends" if i % 3 == 0 else f"Course {i}",
        "displayname": f"Course {i}", "idnumber": f"EXT-{i}" if i % 4 else "",
        "summary": "<p>Learn <b>Python</b> &amp; have fun</p>", "summaryformat": 1, "format": "topics",
        "showgrades": 1, "newsitems": 1, "startdate": 1793121798 + i, "enddate": 0 if i % 2 else 1800897798,
        "numsections": 0, "maxbytes": 0, "showreports": 0, "visible": i % 5 != 0, "hiddensections": 1,
        "groupmode": 0, "groupmodeforce": 0, "defaultgroupingid": 0, "timecreated": 1795713798,
        "timemodified": 1795713798, "enablecompletion": 0, "completionnotify": 0, "lang": "",
        "forcetheme": "", "courseformatoptions": [{"name": "hiddensections", "value": 1}],
        "showactivitydates": True, "showcompletionconditions": True,
        "customfields": [
            {"name": "Price", "shortname": "price", "type": "number", "valueraw": PRICES[i % 10], "value": "x"},
            {"name": "Currency", "shortname": "currency", "type": "text", "valueraw": CURRENCIES[i % 10], "value": None},
            {"name": "Price (free text)", "shortname": "pricetext", "type": "text", "valueraw": "", "value": None},
            {"name": "Internal code", "shortname": "internalcode", "type": "text", "valueraw": "", "value": None},
        ],
    }


def category_row(i: int) -> dict:
    return {
        "id": 2 + i, "name": "Languages &amp; Culture" if i % 4 == 0 else f"Category {i}",
        "idnumber": f"CAT-{i}", "description": "", "descriptionformat": 1, "parent": 0 if i % 3 == 0 else 1,
        "sortorder": 10000 * (i + 1), "coursecount": 2, "visible": 1, "visibleold": 1,
        "timemodified": 1795713798, "depth": 1 if i % 3 == 0 else 2,
        "path": f"/{2 + i}" if i % 3 == 0 else f"/1/{2 + i}", "theme": "",
    }


def user_row(i: int) -> dict:
    return {
        "id": 2 + i, "username": f"user{i}", "firstname": "José" if i % 2 else "Ann",
        "lastname": "O'Connor" if i % 3 else "M&uuml;ller", "fullname": f"User {i}",
        "email": f"User.{i}@Example.COM" if i % 10 else "", "department": "",
        **({"idnumber": f"EMP-{i}"} if i % 2 else {}),
        "firstaccess": 1793114598, "lastaccess": 0 if i % 4 == 0 else 1795706598 + i,
        "auth": "manual", "suspended": i % 20 == 0, "confirmed": True, "lang": "en", "theme": "",
        "timezone": "99", "mailformat": 1, "trackforums": 0,
        "profileimageurlsmall": "http://127.0.0.1:8089/theme/image.php/boost/core/1795713799/u/f2",
        "profileimageurl": "http://127.0.0.1:8089/theme/image.php/boost/core/1795713799/u/f1",
    }


ROLE_STUDENT = {"roleid": 5, "name": "", "shortname": "student", "sortorder": 0}
ROLE_TEACHER = {"roleid": 3, "name": "", "shortname": "editingteacher", "sortorder": 0}


def enrolled_row(i: int) -> dict:
    row = user_row(i)
    del row["auth"], row["suspended"], row["confirmed"], row["lang"], row["theme"], row["timezone"]
    row["lastcourseaccess"] = 0 if i % 3 == 0 else 1795706598 + i
    row["roles"] = [ROLE_TEACHER, ROLE_STUDENT] if i % 25 == 0 else [ROLE_STUDENT]
    return row


def run(label: str, call, rows: list, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            for row in rows:
                call(row)
            best = min(best, time.perf_counter() - start)
        finally:
            gc.enable()
    rate = len(rows) / best
    print(f"  {label:<44} {rate:>12,.0f} rows/s  {1e6 * best / len(rows):7.2f} µs/row")
    return rate


def run_batch(label: str, mapper, rows: list, repeat: int, **kwargs) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        batch = m.map_rows(mapper, rows, **kwargs)
        best = min(best, time.perf_counter() - start)
        del batch
    rate = len(rows) / best
    print(f"  {label:<44} {rate:>12,.0f} rows/s  {1e6 * best / len(rows):7.2f} µs/row")
    return rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows per mapper (default 200000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per mapper; the best counts (default 3)")
    args = parser.parse_args(argv)
    n, repeat = max(args.rows, 1), max(args.repeat, 1)

    def cycled(make):
        pool = [make(i) for i in range(POOL)]
        return (pool * (n // POOL + 1))[:n]

    courses, categories = cycled(course_row), cycled(category_row)
    users, enrolled = cycled(user_row), cycled(enrolled_row)
    print(f"mapper throughput: {n:,} rows each, best of {repeat}; Python {platform.python_version()} "
          f"on {platform.machine()} ({platform.system()})")

    def course(row):
        try:
            return m.map_moodle_course_row(row, synced_at=SYNCED, default_currency="EUR")
        except m.RowRejected:
            return None

    run("map_moodle_course_row", course, courses, repeat)
    run("extract_course_price", lambda row: m.extract_course_price(row, default_currency="EUR"), courses, repeat)
    run("map_moodle_category_row", lambda row: m.map_moodle_category_row(row, synced_at=SYNCED), categories, repeat)
    run("map_moodle_user_row", lambda row: m.map_moodle_user_row(row, synced_at=SYNCED), users, repeat)
    run(
        "map_moodle_enrollment_row",
        lambda row: m.map_moodle_enrollment_row(row, moodle_course_id=2, is_active=True, synced_at=SYNCED),
        enrolled, repeat,
    )
    print("  via map_rows (rejections caught, duplicate ids and e-mails checked, distinct rows):")
    distinct = [course_row(i) for i in range(min(n, 50_000))]
    run_batch(f"map_rows(course) on {len(distinct):,} distinct rows", m.map_moodle_course_row, distinct, repeat,
              default_currency="EUR")
    distinct_users = [user_row(i) for i in range(min(n, 50_000))]
    run_batch(f"map_rows(user) on {len(distinct_users):,} distinct rows", m.map_moodle_user_row, distinct_users,
              repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
