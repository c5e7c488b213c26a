"""Property tests for the backoff maths (resources/retry.py) and param encoding."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resources.moodle import encode_params
from resources.retry import (
    RetryAfterTooLong,
    backoff_ceiling,
    backoff_schedule,
    check_retry_after,
    full_jitter,
    parse_retry_after,
    retry_wait,
)

delays = st.floats(min_value=0, max_value=120, allow_nan=False)
retry_numbers = st.integers(min_value=1, max_value=10_000)
draws = st.floats(min_value=0, max_value=1, exclude_max=True)


@given(retry_numbers, delays, delays, draws)
def test_jittered_wait_is_within_zero_and_the_capped_exponential(n, base, cap, draw):
    wait = full_jitter(n, base, cap, draw)
    assert 0 <= wait <= min(cap, base * 2 ** min(n - 1, 60)) + 1e-9
    assert wait <= cap + 1e-9


@given(st.integers(min_value=1, max_value=60), delays, delays)
def test_ceiling_doubles_until_the_cap(n, base, cap):
    c1, c2 = backoff_ceiling(n, base, cap), backoff_ceiling(n + 1, base, cap)
    assert c2 >= c1  # monotone
    if base * 2 ** n <= cap:
        assert c2 == pytest.approx(2 * c1)
    else:
        assert c2 == cap or c2 == pytest.approx(base * 2**n)


def test_ceiling_defaults_match_the_documented_schedule():
    # MOODLE_RATE_LIMIT_BASE_DELAY_MS=600, MAX_DELAY_MS=8000
    assert [backoff_ceiling(n, 0.6, 8.0) for n in range(1, 7)] == [0.6, 1.2, 2.4, 4.8, 8.0, 8.0]


@given(retry_numbers, delays, delays, draws, st.none() | st.floats(min_value=0, max_value=3600))
def test_retry_after_is_honoured_when_longer(n, base, cap, draw, retry_after):
    wait = retry_wait(n, base, cap, draw, retry_after)
    computed = full_jitter(n, base, cap, draw)
    assert wait == max(computed, retry_after or 0.0)
    if retry_after is not None:
        assert wait >= retry_after  # never earlier than the server asked


@given(st.integers(min_value=0, max_value=20), delays, delays, st.randoms(use_true_random=False))
def test_schedule_has_one_wait_per_retry_all_within_caps(k, base, cap, rnd):
    schedule = backoff_schedule(k, base, cap, rnd.random)
    assert len(schedule) == k
    assert all(0 <= w <= min(cap, base * 2 ** i) + 1e-9 for i, w in enumerate(schedule))


def test_jitter_spreads_over_the_whole_window():
    import random

    rnd = random.Random(7)
    waits = [full_jitter(3, 0.6, 8.0, rnd.random()) for _ in range(2000)]
    assert min(waits) < 0.1 and max(waits) > 2.3  # full window [0, 2.4]
    assert 1.0 < sum(waits) / len(waits) < 1.4  # mean ~1.2


@given(st.integers(min_value=0, max_value=10**6))
def test_retry_after_seconds(n):
    assert parse_retry_after(str(n)) == n
    assert parse_retry_after(f"  {n} ") == n


@given(st.integers(min_value=-86400, max_value=86400))
def test_retry_after_http_date(delta):
    now = datetime(2026, 11, 26, 12, 0, 0, tzinfo=timezone.utc)
    header = format_datetime(now + timedelta(seconds=delta), usegmt=True)  # IMF-fixdate
    assert parse_retry_after(header, now=now) == max(0, delta)


@pytest.mark.parametrize("value", [None, "", "soon", "-", "nan", "inf", "Thu, 99 Foo 2026"])
def test_retry_after_garbage_is_ignored(value):
    assert parse_retry_after(value) is None


def test_retry_after_negative_seconds_and_past_dates_mean_now():
    assert parse_retry_after("-5") == 0
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT") == 0
    # obsolete RFC 850 form
    now = datetime(1994, 11, 6, 8, 49, 30, tzinfo=timezone.utc)
    assert parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now=now) == 7


@given(st.floats(min_value=0, max_value=10**6, allow_nan=False), st.floats(min_value=0, max_value=10**5, allow_nan=False))
def test_retry_after_cap_fails_fast_only_beyond_the_cap(seconds, cap):
    if seconds > cap:
        with pytest.raises(RetryAfterTooLong) as info:
            check_retry_after(seconds, str(seconds), cap)
        assert str(seconds) in str(info.value)
    else:
        check_retry_after(seconds, str(seconds), cap)


# --- param encoding --------------------------------------------------------------------


def test_encoding_examples_from_the_api_notes():
    assert encode_params({"options": [{"name": "onlyactive", "value": True}, {"name": "limitnumber", "value": 500}]}) == [
        ("options[0][name]", "onlyactive"),
        ("options[0][value]", "1"),
        ("options[1][name]", "limitnumber"),
        ("options[1][value]", "500"),
    ]
    assert encode_params({"criteria": [{"key": "email", "value": "%"}]}) == [
        ("criteria[0][key]", "email"),
        ("criteria[0][value]", "%"),
    ]
    assert encode_params({"options": {"ids": [5, 7]}}) == [("options[ids][0]", "5"), ("options[ids][1]", "7")]
    assert encode_params(
        {"coursecapabilities": [{"courseid": 5, "capabilities": ["moodle/course:viewparticipants"]}]}
    ) == [
        ("coursecapabilities[0][courseid]", "5"),
        ("coursecapabilities[0][capabilities][0]", "moodle/course:viewparticipants"),
    ]
    assert encode_params({"returnusercount": False, "x": None, "f": 2.0, "g": 2.5}) == [
        ("returnusercount", "0"), ("x", ""), ("f", "2"), ("g", "2.5"),
    ]
    assert encode_params(None) == [] and encode_params({}) == []


keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=6)
scalars = st.one_of(st.booleans(), st.integers(-10**6, 10**6), st.text(max_size=8))
nested = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(keys, children, max_size=3)),
    max_leaves=12,
)


def _php_parse(fields):
    """Rebuild a structure from bracket fields the way PHP's $_POST does (lists as int-keyed dicts)."""
    root: dict = {}
    for name, value in fields:
        head, _, rest = name.partition("[")
        path = [head] + ([p for p in rest[:-1].split("][")] if rest else [])
        node = root
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return root


def _php_view(value):
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, dict):
        return {str(k): _php_view(v) for k, v in value.items()}
    if isinstance(value, list):
        return {str(i): _php_view(v) for i, v in enumerate(value)}
    return str(value)


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.dictionaries(keys, nested, max_size=4))
def test_encoding_round_trips_through_php_parsing(params):
    fields = encode_params(params)
    expected = {k: v for k, v in _php_view(params).items()}
    # empty containers produce no fields in PHP either: drop them from the expectation
    def prune(x):
        if isinstance(x, dict):
            pruned = {k: prune(v) for k, v in x.items()}
            return {k: v for k, v in pruned.items() if v != {}}
        return x
    assert _php_parse(fields) == prune(expected)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields)


# --- scrubbing -------------------------------------------------------------------------

from resources.moodle_errors import scrub  # noqa: E402

hex_tokens = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)


@given(hex_tokens, st.text(max_size=30), st.text(max_size=30))
def test_scrub_removes_tokens_from_urls_and_literals(token, before, after):
    url = f"{before}/webservice/rest/server.php?wstoken={token}&wsfunction=f{after}"
    assert token not in scrub(url)  # by pattern, even without knowing the token
    assert token not in scrub(f"{before}{token}{after}", [token])  # by literal
    assert token not in scrub(f"Authorization: Bearer {token}")
