"""The pieces behind a truthful history, without Dagster: the short cause, a row's counts and
times, the admin page's view of a row, and the history's "not run" and "never synced" answers."""
from __future__ import annotations

from dataclasses import fields
from datetime import timedelta

from moodle_assets.core.cause import short_cause
from moodle_assets.core.clock import utcnow
from moodle_assets.core.redaction import register_secrets
from moodle_assets.core.targets import SyncStatus, SyncTarget, SyncTrigger
from moodle_assets.history import RunRow, SyncHistory
from moodle_assets.orchestration.prerequisites import downstream, never_synced_reason, run_targets
from moodle_assets.web.run_view import last_run, run_view


def make_row(**values) -> RunRow:
    base = {f.name: None for f in fields(RunRow)}
    base.update(id=3, target="USER_DIRECTORY", trigger="MANUAL", forced=False, started_at=utcnow() - timedelta(minutes=1))
    base.update(values)
    return RunRow(**base)


def test_short_cause_is_one_masked_line_of_at_most_120_chars():
    register_secrets(["sekrit-token-4711"])
    text = "MoodleError: call with wstoken=sekrit-token-4711 failed " + "x" * 500 + "\nTraceback ..."
    short = short_cause(text)
    assert short.startswith("MoodleError: call with wstoken=[REDACTED] failed") and len(short) == 120
    assert "sekrit" not in short and short.endswith("…") and "\n" not in short
    assert short_cause("worker lost | pid 1 was alive") == "worker lost"
    assert short_cause(None) is None and short_cause("  \n ok") == "ok"


def test_counts_are_known_for_success_only_and_add_up():
    now = utcnow()
    ok = make_row(status="SUCCESS", rows_fetched=10, rows_inserted=4, rows_updated=1, rows_unchanged=3,
                  rows_rejected=1, rows_skipped=1, rows_deactivated=2, worker_started_at=now - timedelta(seconds=2),
                  finished_at=now, started_at=now - timedelta(seconds=12))
    assert ok.counts_add_up is True and ok.duration_seconds == 2.0 and ok.queued_seconds == 10.0
    assert ok.breakdown == "fetched 10 = inserted 4 + updated 1 + unchanged 3 + rejected 1 + skipped 1"
    view = run_view(ok, now, None)
    assert [n for _, n in view.counts] == [10, 4, 1, 3, 1, 1] and view.deactivated == 2
    assert view.changes_url == "/dashboard/admin/integration/runs/3/changes"
    assert view.duration == "2.0 s" and view.queued == "10.0 s"

    failed = make_row(status="FAILED", rows_fetched=0, rows_inserted=0, error="E: boom", finished_at=now,
                      requests_made=5)
    assert not failed.has_counts and failed.breakdown is None and failed.duration_seconds is None
    view = run_view(failed, now, None)
    assert view.counts == [] and view.counts_text == "–" and view.changes_url is None and view.duration == ""


def test_last_run_is_one_row_and_a_running_one_reads_running_since():
    now = utcnow()
    assert last_run(None, now).text == "never"
    running = make_row(status="RUNNING", worker_started_at=now - timedelta(minutes=5))
    assert last_run(running, now).text == "running since 5 min ago"
    assert last_run(make_row(status="RUNNING"), now, "QUEUED").text == "queued since 1 min ago"  # from the claim
    not_run = make_row(status="FAILED", error="not run: upstream failed (USER_DIRECTORY failed in the same Dagster run)",
                       finished_at=now)
    assert (last_run(not_run, now).status, last_run(not_run, now).pill) == ("not run", "not-run")
    assert run_view(not_run, now, None).status_label == "not run"


def test_prerequisite_wording_and_downstream():
    assert never_synced_reason([SyncTarget.USER_DIRECTORY, SyncTarget.COURSE_CATALOG]) == (
        "courses and users have never been synced: run COURSE_CATALOG and USER_DIRECTORY first (or sync all)"
    )
    assert run_targets("sync_all", None, {}) == list(SyncTarget)
    assert run_targets("sync_all", ["user_directory", "enrollments"], {}) == [SyncTarget.USER_DIRECTORY,
                                                                               SyncTarget.ENROLLMENTS]
    assert run_targets("sync_course_catalog", None, {}) == [SyncTarget.COURSE_CATALOG]
    assert downstream(SyncTarget.COURSE_CATALOG, list(SyncTarget)) == [SyncTarget.ENROLLMENTS]
    assert downstream(SyncTarget.ENROLLMENTS, list(SyncTarget)) == []


def test_close_not_run_closes_unclaimed_rows_adds_missing_ones_and_leaves_taken_ones(migrated_engine):
    history = SyncHistory(migrated_engine)
    assert history.never_succeeded(SyncTarget) == list(SyncTarget)
    claimed = history.claim(SyncTarget.ENROLLMENTS, SyncTrigger.API, dagster_run_id="run-a")
    taken = history.claim(SyncTarget.USER_DIRECTORY, SyncTrigger.API, dagster_run_id="run-a")
    owner = history.take(taken.run_id, "run-a")
    closed = history.close_not_run("run-a", [SyncTarget.ENROLLMENTS, SyncTarget.USER_DIRECTORY], SyncTrigger.API,
                                   "not run: upstream failed (X)")
    assert closed == [claimed.run_id]
    row = history.get(claimed.run_id)
    assert row.status == "FAILED" and row.error == "not run: upstream failed (X)" and row.finished_at is not None
    assert history.get(taken.run_id).status == "RUNNING"
    history.finish(owner, SyncStatus.SUCCESS)
    assert history.never_succeeded(SyncTarget) == [SyncTarget.COURSE_CATALOG, SyncTarget.ENROLLMENTS]

    [added] = history.close_not_run("run-b", [SyncTarget.ENROLLMENTS], SyncTrigger.SCHEDULE, "not run: y")
    row = history.get(added)
    assert (row.status, row.trigger, row.dagster_run_id, row.error) == ("FAILED", "SCHEDULE", "run-b", "not run: y")
    assert history.last_run(SyncTarget.ENROLLMENTS).id == added
