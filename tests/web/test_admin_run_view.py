"""The admin page's view of one history row: a running sync names its worker and last heartbeat."""
from __future__ import annotations

from dataclasses import fields
from datetime import timedelta

from moodle_assets.core.clock import utcnow
from moodle_assets.history import RunRow
from moodle_assets.web.admin import run_view


def make_row(**values) -> RunRow:
    base = {f.name: None for f in fields(RunRow)}
    base.update(id=7, target="ENROLLMENTS", trigger="API", forced=False, started_at=utcnow() - timedelta(minutes=3))
    base.update(values)
    return RunRow(**base)


def test_a_running_sync_shows_its_worker_and_last_heartbeat():
    now = utcnow()
    row = make_row(status="RUNNING", worker_pid=4711, worker_host="worker-2", heartbeat_at=now - timedelta(minutes=2))
    view = run_view(row, now, "RUNNING")
    assert view.status_label == "running"
    assert view.message == "pid 4711 on host worker-2; last heartbeat 2 min ago" and view.message_kind == "note"


def test_a_queued_or_finished_sync_shows_no_worker():
    now = utcnow()
    assert run_view(make_row(status="RUNNING"), now, "QUEUED").message is None
    failed = make_row(status="FAILED", worker_pid=4711, worker_host="w", error="worker lost: ...")
    assert run_view(failed, now, None).message == "worker lost: ..."
