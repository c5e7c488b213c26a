"""The production configuration end to end: Dagster storage and the app DB on PostgreSQL, and
the code server, the daemon and the web process as three separate processes
(deploy/dagster.postgres.yaml, deploy/workspace.grpc.yaml)."""
from __future__ import annotations

import pytest
import requests
from sqlalchemy import func, select

from production_stack import ADMIN, WEB_TOKEN

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def count(engine, model) -> int:
    from moodle_assets.store.db import transaction

    with transaction(engine) as s:
        return s.scalar(select(func.count()).select_from(model))


def test_trigger_and_graphql_runs_succeed_across_three_processes(prod):
    from moodle_assets.store.models import CourseCatalog, User as Users, UserCourseEnrollment

    # Instance storage really is PostgreSQL, and the app DB too.
    assert type(prod.instance.run_storage).__name__ == "PostgresRunStorage"
    assert prod.app_db_url.startswith("postgresql+psycopg2://") and prod.engine.dialect.name == "postgresql"

    # 1. The HTTP trigger: all three targets in one sync_all run, executed by a run worker the
    #    code server starts when the daemon dequeues the run.
    rows = prod.sync_now(["COURSE_CATALOG", "USER_DIRECTORY", "ENROLLMENTS"])
    assert {t: r.status for t, r in rows.items()} == dict.fromkeys(rows, "SUCCESS"), {t: r.error for t, r in rows.items()}
    assert all(r.trigger == "API" for r in rows.values())
    (run_id,) = {r.dagster_run_id for r in rows.values()}
    assert prod.wait_dagster_run(run_id) == "SUCCESS"  # the rows close a moment before the run ends
    assert prod.instance.get_run_by_id(run_id).job_name == "sync_all"
    summary = requests.get(f"{prod.emulator.url}/__emulator__/dataset", timeout=10).json()
    assert count(prod.engine, CourseCatalog) == summary["courses"]
    assert count(prod.engine, Users) == summary["users"] - 1  # not the guest account
    assert count(prod.engine, UserCourseEnrollment) == summary["enrolments"]
    assert rows["ENROLLMENTS"].rows_fetched == summary["enrolments"]

    # 2. GraphQL launchRun (as the web README shows), tagged: the asset claims its own row.
    before = {r.id for r in prod.history("USER_DIRECTORY")}
    graphql_run = prod.launch_graphql("sync_user_directory", "USER_DIRECTORY")
    assert prod.wait_dagster_run(graphql_run) == "SUCCESS"
    [row] = [r for r in prod.history("USER_DIRECTORY") if r.id not in before]
    assert (row.status, row.trigger, row.dagster_run_id) == ("SUCCESS", "GRAPHQL", graphql_run)
    assert row.rows_fetched == summary["users"] and row.rows_inserted == 0 and row.rows_updated == 0

    # 3. The admin page (behind the web token) lists both runs, linked to the Dagster UI.
    page = requests.get(prod.url + ADMIN, headers={"Authorization": f"Bearer {WEB_TOKEN}"}, timeout=30)
    assert page.status_code == 200
    assert f'href="/runs/{run_id}"' in page.text and f'href="/runs/{graphql_run}"' in page.text
    # ... and nothing but the trigger is reachable without it.
    assert requests.get(prod.url + ADMIN, headers={"Accept": "application/json"}, timeout=30).status_code == 401
    assert requests.post(prod.url + "/graphql", json={"query": "{ __typename }"}, timeout=30).status_code == 401

    # 4. The processes are what the docs say they are.
    assert set(prod.procs) == {"code_server", "daemon", "web"}
    prod.check_alive()
