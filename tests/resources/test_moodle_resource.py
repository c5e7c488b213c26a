"""MoodleResource inside Dagster: EnvVar token never reaches run config or the event log."""

import dagster as dg
import pytest
from moodle_replay import SECRET_TOKEN, Reply

from resources.moodle import MoodleClient, MoodleRateLimitedError, MoodleResource


def test_resource_in_a_run_with_env_vars(replay, monkeypatch, throttle_dir):
    monkeypatch.setenv("MOODLE_URL", replay.url)
    monkeypatch.setenv("MOODLE_TOKEN", SECRET_TOKEN)
    monkeypatch.setenv("MOODLE_THROTTLE_DIR", throttle_dir)
    monkeypatch.setenv("MOODLE_RATE_LIMIT_BASE_DELAY_MS", "1")
    monkeypatch.setenv("MOODLE_RATE_LIMIT_MAX_DELAY_MS", "5")
    replay.push(Reply(429, "", {"Retry-After": "0"}), Reply(body='{"release": "5.0"}'))

    @dg.asset
    def probe(context: dg.AssetExecutionContext, moodle: MoodleResource) -> dg.MaterializeResult:
        info = moodle.webservice_post("core_webservice_get_site_info")
        assert isinstance(moodle.get_client(), MoodleClient)
        return dg.MaterializeResult(metadata={"release": info["release"], **{
            k: v for k, v in moodle.snapshot().items() if isinstance(v, (int, float))}})

    resource = MoodleResource(url=dg.EnvVar("MOODLE_URL"), token=dg.EnvVar("MOODLE_TOKEN"))
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([probe], resources={"moodle": resource}, instance=instance)
    assert result.success
    mat = result.asset_materializations_for_node("probe")[0]
    assert mat.metadata["responses_429"].value == 1 and mat.metadata["retries"].value == 1
    # the token is nowhere in what Dagster stored for the run
    run = instance.get_run_by_id(result.run_id)
    assert SECRET_TOKEN not in repr(run.run_config) and SECRET_TOKEN not in repr(run)
    for record in instance.all_logs(result.run_id):
        assert SECRET_TOKEN not in repr(record)
    assert SECRET_TOKEN not in repr(resource)


def test_for_emulator_and_one_client_per_resource(replay, throttle_dir):
    class Emu:
        url = replay.url
        token = SECRET_TOKEN

    res = MoodleResource.for_emulator(Emu(), requests_per_second=0, throttle_dir=throttle_dir)
    assert res.get_client() is res.get_client()
    replay.push(Reply(body="[]"))
    assert res.webservice_get("core_course_get_categories") == []


def test_failed_run_error_text_has_no_token(replay, monkeypatch, throttle_dir):
    monkeypatch.setenv("MOODLE_TOKEN", SECRET_TOKEN)
    replay.push(Reply(429, "", {"Retry-After": "999"}))

    @dg.asset
    def fails(moodle: MoodleResource) -> None:
        moodle.webservice_get("core_course_get_courses", {"options": {"ids": [2]}})

    resource = MoodleResource(url=replay.url, token=dg.EnvVar("MOODLE_TOKEN"), throttle_dir=throttle_dir,
                              requests_per_second=0)
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([fails], resources={"moodle": resource}, instance=instance, raise_on_error=False)
    assert not result.success
    failure = result.get_step_failure_events()[0].event_specific_data.error
    cause = failure.cause or failure
    assert cause.cls_name == "MoodleRateLimitedError" and "999" in cause.message
    assert "resources.moodle.MoodleRateLimitedError" in cause.message or "resources.moodle.MoodleRateLimitedError" in failure.to_string()
    for record in instance.all_logs(result.run_id):
        assert SECRET_TOKEN not in repr(record)
    # the typed errors carry their public module's name (what run logs and tracebacks show)
    assert MoodleRateLimitedError.__module__ == "resources.moodle"
