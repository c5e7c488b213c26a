"""The enrolment fetch in a worker process (moodle_assets/sync/fetch_worker.py): same rows, same
counts, same requests as the in-process threads; typed errors cross the pipe; the worker never
outlives its parent and never carries the token on its command line."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from moodle_assets.store.db import create_app_engine, transaction
from moodle_assets.store.migrate import upgrade
from moodle_assets.store.models import (
    CourseCatalog,
    CourseCategory,
    IntegrationChangeLog,
    User,
    UserCourseEnrollment,
)
from moodle_assets.store.raw import RawValues
from moodle_assets.sync import fetch_worker
from moodle_assets.sync.course_fetch import FetchedCourse
from moodle_assets.sync.engine import sync_course_catalog, sync_enrollments, sync_user_directory
from moodle_assets.sync.fetch import MoodleFetcher
from moodle_assets.sync.options import SyncOptions
from moodle_emulator import EmulatorServer
from resources.moodle_client import MoodleClient
from resources.moodle_errors import MoodleAuthenticationError

TOKEN = "worker-test-token-3b9e71"
TIME_COLUMNS = {"synced_at", "first_seen_at", "created_at", "updated_at", "changed_at"}


@pytest.fixture(scope="module")
def site_s():
    with EmulatorServer(scale="S", token=TOKEN, port=0) as emu:
        yield emu


def _client(url: str, token: str = TOKEN, **overrides) -> MoodleClient:
    return MoodleClient(url, token, base_delay_ms=5, max_delay_ms=20, **overrides)


def _contents(engine) -> dict:
    """Every data table's rows without the columns that carry the sync's own clock or ids."""
    out = {}
    with transaction(engine) as session:
        for model in (CourseCategory, CourseCatalog, User, UserCourseEnrollment):
            cols = [c.name for c in model.__table__.columns if c.name not in TIME_COLUMNS and c.name != "id"]
            out[model.__tablename__] = sorted(
                (tuple(getattr(r, c) for c in cols) for r in session.scalars(select(model))), key=repr
            )
        out["change_log"] = sorted(
            session.execute(
                select(IntegrationChangeLog.entity, IntegrationChangeLog.moodle_key, IntegrationChangeLog.kind)
            ).all()
        )
    return out


def _sync_all(url: str, db: Path, mode: str) -> tuple[dict, list, dict]:
    upgrade(f"sqlite:///{db}")
    engine = create_app_engine(f"sqlite:///{db}")
    client = _client(url)
    fetcher = MoodleFetcher(client)
    options = dataclasses.replace(SyncOptions(), fetch_process=mode)
    try:
        outcomes = [
            sync(fetcher, engine, options) for sync in (sync_course_catalog, sync_user_directory, sync_enrollments)
        ]
        return _contents(engine), outcomes, client.snapshot()
    finally:
        client.close()
        engine.dispose()


def test_the_worker_process_stores_what_the_threads_store_with_the_same_requests(site_s, tmp_path):
    threads, t_outcomes, t_metrics = _sync_all(site_s.url, tmp_path / "threads.db", "off")
    worker, w_outcomes, w_metrics = _sync_all(site_s.url, tmp_path / "worker.db", "on")
    assert t_outcomes[2].details["enrollments_fetched_in_worker_process"] is False
    assert w_outcomes[2].details["enrollments_fetched_in_worker_process"] is True
    assert len(worker["user_course_enrollment"]) > 4000
    assert worker == threads
    assert dataclasses.asdict(w_outcomes[2].counts) == dataclasses.asdict(t_outcomes[2].counts)
    # The worker's requests are counted in this process's client (run rows and metadata use them).
    assert w_metrics["requests_by_function"] == t_metrics["requests_by_function"]
    assert w_metrics["requests_total"] == t_metrics["requests_total"]


def _change_log_rows(engine) -> int:
    with transaction(engine) as session:
        return int(session.scalar(select(func.count()).select_from(IntegrationChangeLog)) or 0)


def test_a_resync_through_the_worker_changes_nothing(site_s, tmp_path):
    db = tmp_path / "app.db"
    first, _, _ = _sync_all(site_s.url, db, "on")
    engine = create_app_engine(f"sqlite:///{db}")
    client = _client(site_s.url)
    try:
        logged_before = _change_log_rows(engine)
        outcome = sync_enrollments(MoodleFetcher(client), engine, SyncOptions(fetch_process="on"))
        logged_after = _change_log_rows(engine)
        assert _contents(engine) == first
    finally:
        client.close()
        engine.dispose()
    counts = outcome.counts
    assert counts.fetched > 4000 and counts.unchanged == counts.fetched
    assert counts.inserted == counts.updated == counts.deactivated == 0
    assert logged_before > 4000 and logged_after == logged_before


def test_an_error_that_ends_the_step_crosses_the_pipe_typed_and_without_the_token(site_s):
    client = _client(site_s.url, token="not-the-token-9f2c1e")
    fetcher = MoodleFetcher(client)
    results = fetch_worker.courses_in_process(
        fetcher,
        [(1, 2), (2, 3)],
        datetime.now(UTC),
        RawValues.for_dialect(sqlite=True),
        concurrency=2,
        check=lambda: None,
    )
    with pytest.raises(MoodleAuthenticationError) as info:
        list(results)
    assert "not-the-token-9f2c1e" not in str(info.value)
    # The failed requests were made by the worker and are counted here.
    assert client.snapshot()["requests_total"] >= 1
    client.close()


def test_a_course_result_arrives_as_staged_rows(site_s):
    client = _client(site_s.url)
    results = fetch_worker.courses_in_process(
        MoodleFetcher(client),
        [(10, 2)],
        datetime.now(UTC),
        RawValues.for_dialect(sqlite=True),
        concurrency=1,
        check=lambda: None,
    )
    ((local_id, moodle_id, got),) = list(results)
    client.close()
    assert (local_id, moodle_id) == (10, 2)
    assert isinstance(got, FetchedCourse) and got.fetched == len(got.rows) + len(got.rejects) > 0
    assert all(row[1] == 2 and row[2] in (0, 1) for row in got.rows)  # moodle course, is_active as 0/1


@pytest.mark.parametrize(
    "mode, courses, client_is_real, cores, expected",
    [
        ("off", 10_000, True, 8, False),
        ("on", 1, True, 1, True),
        ("auto", fetch_worker.AUTO_MIN_COURSES, True, 2, True),
        ("auto", fetch_worker.AUTO_MIN_COURSES - 1, True, 2, False),
        ("auto", 10_000, True, 1, False),
        ("on", 10_000, False, 8, False),  # a fixture/replay client cannot be rebuilt in another process
    ],
)
def test_when_the_worker_is_used(mode, courses, client_is_real, cores, expected, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    client = _client("http://127.0.0.1:9") if client_is_real else object()
    assert fetch_worker.wanted(mode, courses, client) is expected
    with pytest.raises(ValueError, match="auto, on, off"):
        fetch_worker.wanted("sometimes", courses, client)


PARENT = textwrap.dedent(
    """
    import datetime, os, sys
    from moodle_assets.store.raw import RawValues
    from moodle_assets.sync import fetch_worker
    from moodle_assets.sync.fetch import MoodleFetcher
    from resources.moodle_client import MoodleClient
    client = MoodleClient(sys.argv[1], sys.argv[2])
    results = fetch_worker.courses_in_process(
        MoodleFetcher(client), [(i, i) for i in range(2, 52)], datetime.datetime.now(datetime.UTC),
        RawValues.for_dialect(sqlite=True), concurrency=1, check=lambda: None,
    )
    next(results)
    children = open(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read().split()
    print(children[0], flush=True)
    for _ in results:
        pass
    """
)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads the process tree from /proc (Linux)")
def test_the_worker_dies_with_its_parent_and_its_command_line_holds_no_token(tmp_path):
    # A slow site (its modelled server time slept) keeps the worker busy when its parent is killed.
    with EmulatorServer(scale="S", token=TOKEN, port=0, simulate_cost=True, cost_scale=2.0) as slow:
        parent = subprocess.Popen(
            [sys.executable, "-c", PARENT, slow.url, TOKEN], stdout=subprocess.PIPE, text=True, cwd=os.getcwd()
        )
        try:
            assert parent.stdout is not None
            child = int(parent.stdout.readline())
            assert _alive(child)
            command_line = Path(f"/proc/{child}/cmdline").read_bytes()
            assert TOKEN.encode() not in command_line
            assert TOKEN.encode() not in Path(f"/proc/{child}/environ").read_bytes()
            os.kill(parent.pid, signal.SIGKILL)
            parent.wait(timeout=10)
            deadline = time.monotonic() + 10
            while _alive(child) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not _alive(child), "the fetch worker outlived its parent"
        finally:
            if parent.poll() is None:
                parent.kill()
