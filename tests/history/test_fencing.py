"""Fencing: a worker commits only while its run row is still RUNNING and its own. A worker that
lost its row between fetching and applying (closed as "worker lost" while it was stopped, and the
target synced since by a new owner) rolls its whole write transaction back, and the data stay the
new owner's. On SQLite and PostgreSQL, with the real engine against the emulator."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import requests

from moodle_assets.core.clock import utcnow
from moodle_assets.core.targets import SyncStatus, SyncTarget, SyncTrigger
from moodle_assets.history import LostOwnership, SyncHistory
from moodle_assets.store.db import transaction
from moodle_assets.sync.engine import SyncControl, SyncStopped, sync_course_catalog
from moodle_assets.sync.fetch import MoodleFetcher
from moodle_assets.sync.options import SyncOptions
from resources.moodle import MoodleResource
from tests.sync.test_sync_engine import snapshot

CATALOG = SyncTarget.COURSE_CATALOG


def control(history: SyncHistory, owner) -> SyncControl:
    return SyncControl(
        begin_apply=lambda s: history.fence(owner, s, final=False),
        fence=lambda s: history.fence(owner, s, final=True),
    )


def mutate(emulator, *ops):
    requests.post(f"{emulator.url}/__emulator__/mutate", json={"ops": list(ops)}, timeout=10).raise_for_status()


class TakenOverAfterFetch(MoodleFetcher):
    """A fetcher that, once the old worker has fetched everything, lets the world move on: the
    old worker's row is closed as a ghost and a new owner syncs newer Moodle data."""

    def __init__(self, client, on_fetched):
        super().__init__(client)
        self.on_fetched = on_fetched

    def courses(self):
        rows = super().courses()
        self.on_fetched()
        return rows


@pytest.fixture
def client(emulator):
    client = MoodleResource(url=emulator.url, token=emulator.token, base_delay_ms=5, max_delay_ms=20).get_client()
    yield client
    client.close()


def test_a_worker_that_lost_its_row_rolls_back_and_the_new_owners_data_stay(migrated_engine, emulator, client):
    history = SyncHistory(migrated_engine, heartbeat_timeout=30)
    options = SyncOptions()
    sync_course_catalog(MoodleFetcher(client), migrated_engine, options)  # the old state
    mutate(emulator, {"op": "hide_course", "course_id": 2})  # what the old worker will fetch

    old = history.take(history.claim(CATALOG, SyncTrigger.CLI, hold=True).run_id, "run-old")
    new_rows = {}

    def takeover():
        # The old worker "was stopped" past the timeout: its row is closed, a new owner syncs
        # what Moodle says now (a price changed too), commits and finishes.
        assert history.reconcile_ghosts(now=utcnow() + timedelta(seconds=31)) == [old.run_id]
        mutate(emulator, {"op": "set_course_price", "course_id": 3, "price": 77})
        claim = history.claim(CATALOG, SyncTrigger.CLI, hold=True)
        new = history.take(claim.run_id, "run-new")
        sync_course_catalog(MoodleFetcher(client), migrated_engine, options, control(history, new))
        assert history.finish(new, SyncStatus.SUCCESS)
        new_rows["snapshot"] = snapshot(migrated_engine)
        new_rows["id"] = claim.run_id

    with pytest.raises(LostOwnership) as lost:
        sync_course_catalog(TakenOverAfterFetch(client, takeover), migrated_engine, options, control(history, old))
    assert str(lost.value).startswith(f"lost ownership: sync run #{old.run_id} was closed FAILED: worker lost")
    assert snapshot(migrated_engine) == new_rows["snapshot"]  # the old worker's apply was rolled back
    old_row, new_row = history.get(old.run_id), history.get(new_rows["id"])
    assert old_row.status == "FAILED" and old_row.applied_at is None
    assert new_row.status == "SUCCESS" and new_row.applied_at is not None
    assert not history.finish(old, SyncStatus.SUCCESS)  # and it cannot close the row either


def test_a_closed_row_stops_the_apply_before_it_writes(migrated_engine, emulator, client):
    history = SyncHistory(migrated_engine, heartbeat_timeout=30)
    before = snapshot(migrated_engine)
    owner = history.take(history.claim(CATALOG, SyncTrigger.CLI).run_id, "run")
    history.reconcile_ghosts(now=utcnow() + timedelta(seconds=31))
    with pytest.raises(LostOwnership):
        sync_course_catalog(MoodleFetcher(client), migrated_engine, SyncOptions(), control(history, owner))
    assert snapshot(migrated_engine) == before


def test_a_stop_request_ends_the_sync_between_pages(migrated_engine, client):
    with pytest.raises(SyncStopped, match="taken over"):
        sync_course_catalog(MoodleFetcher(client), migrated_engine, SyncOptions(),
                            SyncControl(stop_reason=lambda: "taken over"))
    assert snapshot(migrated_engine)["course_catalog"] == []


@pytest.mark.postgres
def test_on_postgres_a_takeover_skips_a_row_whose_worker_is_committing(pg_url):
    """The final fence locks the run row until commit: a concurrent ghost check leaves that row
    alone (SKIP LOCKED) instead of closing it under a commit that is about to succeed."""
    from moodle_assets.store.db import create_app_engine
    from moodle_assets.store.migrate import upgrade

    upgrade(pg_url)
    engine = create_app_engine(pg_url)
    try:
        history = SyncHistory(engine, heartbeat_timeout=30)
        owner = history.take(history.claim(CATALOG, SyncTrigger.CLI).run_id, "run")
        closed: list[list[int]] = []
        with transaction(engine) as session:
            history.fence(owner, session, final=True)  # row locked until this commits
            probe = threading.Thread(target=lambda: closed.append(
                history.reconcile_ghosts(now=utcnow() + timedelta(seconds=31))))
            probe.start()
            probe.join(30)
        assert closed == [[]]
        assert history.get(owner.run_id).status == "RUNNING" and history.get(owner.run_id).applied_at
        assert history.finish(owner, SyncStatus.SUCCESS)
    finally:
        engine.dispose()
