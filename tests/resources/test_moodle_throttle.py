"""The host-wide throttle (resources/throttle.py), pagination and thread safety of the client."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from moodle_replay import SECRET_TOKEN, Reply, load_real_fixture

from resources.moodle import MoodleUnknownError
from resources.throttle import HostThrottle, site_key


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_reservations_are_evenly_spaced_across_instances(tmp_path):
    clock = FakeClock()
    a = HostThrottle("https://lms.example.edu", 10, tmp_path, clock=clock)
    b = HostThrottle("https://LMS.example.edu/", 10, tmp_path, clock=clock)  # same site, other instance
    assert a.path == b.path
    waits = [t.reserve() for t in (a, b, a, b, a)]
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    clock.t += 10  # idle: no credit is banked (no burst after a pause)
    assert a.reserve() == 0.0 and b.reserve() == pytest.approx(0.1)


def test_other_sites_and_disabled_throttles_are_independent(tmp_path):
    clock = FakeClock()
    a = HostThrottle("https://one.example.edu", 1, tmp_path, clock=clock)
    b = HostThrottle("https://two.example.edu", 1, tmp_path, clock=clock)
    assert a.reserve() == 0 and b.reserve() == 0
    off = HostThrottle("https://one.example.edu", 0, tmp_path, clock=clock)
    assert not off.enabled and off.acquire() == 0.0


def test_key_is_a_hash_of_the_url_not_the_token(tmp_path):
    t = HostThrottle("https://lms.example.edu/moodle", 5, tmp_path)
    assert site_key("https://lms.example.edu/moodle") in t.path.name
    assert "lms" not in t.path.name


def test_penalize_pauses_every_caller_and_clock_jumps_are_clamped(tmp_path):
    clock = FakeClock()
    a = HostThrottle("https://lms.example.edu", 10, tmp_path, clock=clock)
    b = HostThrottle("https://lms.example.edu", 10, tmp_path, clock=clock)
    a.penalize(2.0)
    assert b.reserve() == pytest.approx(2.0)
    clock.t -= 100_000  # wall clock jumped back a day: do not sleep for the jump
    assert a.reserve() == 0.0



class FakeSleep:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock

    def __call__(self, seconds: float) -> None:
        self.clock.t += seconds


def test_strict_spacing_loses_a_late_start_and_burst_tolerance_makes_it_up(tmp_path):
    """Four callers queue up, the second wakes 40 ms late (interval 100 ms): strict spacing
    (burst 0) shifts every later start by 40 ms; with burst 1 (the grid may run one interval
    ahead, so the first two slots are both "now") the next caller starts on its slot again."""
    for burst, expected in ((0.0, [0.0, 0.14, 0.24, 0.34]), (1.0, [0.0, 0.04, 0.1, 0.2])):
        clock = FakeClock()
        t = HostThrottle("https://lms.example.edu", 10, tmp_path / str(burst), clock=clock, burst=burst)
        t0, starts = clock.t, []
        slots = [t.reserve() for _ in range(4)]  # four callers queue up at once
        for i, wait in enumerate(slots):
            clock.t = max(clock.t, t0 + wait + (0.04 if i == 1 else 0.0))  # caller 1 oversleeps
            while (extra := t._claim_start()) > 0:
                clock.t += extra
            starts.append(round(clock.t - t0, 6))
        assert starts == pytest.approx(expected)


def test_burst_tolerance_bounds_every_window_and_the_long_run_rate(tmp_path):
    clock = FakeClock()
    t = HostThrottle("https://lms.example.edu", 10, tmp_path, clock=clock, sleep=FakeSleep(clock), burst=2)
    starts = []
    for i in range(200):
        t.acquire()
        starts.append(clock.t)
        if i % 7 == 0:
            clock.t += 0.35  # the caller was busy: idle time beyond the tolerance is not banked
    # in any window w: at most 1 + burst + w * rate starts
    for i, s0 in enumerate(starts):
        for j in range(i, len(starts)):
            assert j - i + 1 <= 1 + 2 + (starts[j] - s0) * 10 + 1e-6
    # after an idle pause at most burst + 1 start back to back, then the nominal spacing
    clock.t += 100
    t0 = clock.t
    for _ in range(6):
        t.acquire()
    assert clock.t - t0 == pytest.approx(0.3)


def test_penalize_holds_even_with_burst_tolerance(tmp_path):
    clock = FakeClock()
    t = HostThrottle("https://lms.example.edu", 10, tmp_path, clock=clock, sleep=FakeSleep(clock), burst=2)
    t.penalize(2.0)
    t0 = clock.t
    assert t.acquire() == pytest.approx(2.0)
    t.acquire()
    assert clock.t - t0 == pytest.approx(2.1)  # no burst right after the server's pause



def test_the_burst_tolerance_defaults_to_one_and_zero_is_allowed():
    from moodle_assets.core.validation import ConfigError
    from resources.moodle_client import DEFAULT_THROTTLE_BURST, ClientSettings

    assert ClientSettings("https://lms.example.edu").throttle_burst == DEFAULT_THROTTLE_BURST == 1.0
    assert ClientSettings("https://lms.example.edu", throttle_burst=0).throttle_burst == 0.0
    with pytest.raises(ConfigError, match="throttle_burst"):
        ClientSettings("https://lms.example.edu", throttle_burst=-1)


def test_threads_share_the_budget(tmp_path):
    t = HostThrottle("https://lms.example.edu", 100, tmp_path)
    stamps: list[float] = []
    lock = threading.Lock()

    def work():
        for _ in range(10):
            t.acquire()
            import time

            with lock:
                stamps.append(time.monotonic())

    with ThreadPoolExecutor(4) as pool:
        for f in [pool.submit(work) for _ in range(4)]:
            f.result()
    stamps.sort()
    assert len(stamps) == 40
    assert stamps[-1] - stamps[0] >= 39 * 0.01 * 0.9  # 40 starts need >= 39 intervals


CHILD = textwrap.dedent(
    """
    import sys, time, json
    from resources.throttle import HostThrottle
    t = HostThrottle(sys.argv[1], float(sys.argv[2]), sys.argv[3])
    go = float(sys.argv[5])
    while time.time() < go:
        time.sleep(0.001)
    out = []
    for _ in range(int(sys.argv[4])):
        t.acquire()
        out.append(time.time())
    print(json.dumps(out))
    """
)


def test_two_processes_share_one_budget(tmp_path):
    import time

    rate, each = 40.0, 20
    go = time.time() + 1.0
    procs = [
        subprocess.Popen([sys.executable, "-c", CHILD, "https://lms.example.edu", str(rate), str(tmp_path), str(each), str(go)],
                         stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    stamps = sorted(s for p in procs for s in json.loads(p.communicate(timeout=30)[0]))
    assert len(stamps) == 2 * each
    span = stamps[-1] - stamps[0]
    assert span >= (2 * each - 1) / rate * 0.9, span  # together, not 2x the rate
    # no 1-second window holds more than rate (+1 for the window edge)
    worst = max(sum(1 for s in stamps if t0 <= s < t0 + 1.0) for t0 in stamps)
    assert worst <= rate + 1


def test_throttle_spaces_http_arrivals(replay, make_client):
    client = make_client(replay.url, requests_per_second=25, throttle_margin=0.0)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: client.webservice_post("core_webservice_get_site_info"), range(20)))
    arrivals = sorted(s.t for s in replay.seen)
    assert (arrivals[-1] - arrivals[0]) >= 19 / 25 * 0.9
    snap = client.snapshot()
    # Waits are counted (how much depends on how fast the replay answers on a loaded box: a
    # slow answer leaves less to wait for; alone it is ~1.5 s).
    assert snap["requests_total"] == 20 and snap["throttle_wait_seconds"] > 0.1


# --- pagination --------------------------------------------------------------------


def _options(seen):
    form = dict(seen.form)
    return {form[f"options[{i}][name]"]: form[f"options[{i}][value]"]
            for i in range(10) if f"options[{i}][name]" in form}


def test_paginate_real_pages_until_the_empty_one(replay, make_client):
    for start in range(0, 14, 2):
        replay.push_fixture(f"get_enrolled_users_course_2_page_from_{start}_size_2")
    client = make_client(replay.url)
    users = client.get_enrolled_users(2, options=[{"name": "onlyactive", "value": 1}], userfields=["id", "email"], page_size=2)
    full = json.loads(load_real_fixture("get_enrolled_users_course_2")["body_raw"])
    assert [u["id"] for u in users] == sorted(u["id"] for u in full)
    assert len(replay.seen) == 7  # 6 full pages + the empty page past the end
    opts = [_options(s) for s in replay.seen]
    assert [o["limitfrom"] for o in opts] == [str(i) for i in range(0, 14, 2)]
    assert all(o["limitnumber"] == "2" and o["onlyactive"] == "1" and o["userfields"] == "id,email" for o in opts)


def test_paginate_stops_on_a_short_page_and_replaces_paging_options(replay, make_client):
    replay.push(Reply(body="[1,2,3]"), Reply(body="[4,5,6]"), Reply(body="[7]"))
    client = make_client(replay.url)
    pages = list(client.paginate("core_enrol_get_enrolled_users",
                                 {"courseid": 5, "options": [{"name": "limitfrom", "value": 99}]}, page_size=3))
    assert pages == [[1, 2, 3], [4, 5, 6], [7]]
    assert [_options(s)["limitfrom"] for s in replay.seen] == ["0", "3", "6"]
    assert all(list(_options(s)).count("limitfrom") == 1 for s in replay.seen)


def test_paginate_stops_when_the_server_ignores_paging(replay, make_client):
    replay.default = Reply(body="[1,2,3,4,5]")  # the whole list, whatever the options say
    client = make_client(replay.url)
    assert list(client.iter_paginated("f", {}, page_size=2)) == [1, 2, 3, 4, 5]
    assert len(replay.seen) == 1


def test_paginate_rejects_non_lists(replay, make_client):
    replay.push(Reply(body='{"users": []}'))
    with pytest.raises(MoodleUnknownError, match="expected a list"):
        list(make_client(replay.url).paginate("f"))


# --- concurrency -------------------------------------------------------------------


def test_one_client_many_threads(replay, make_client):
    client = make_client(replay.url, pool_size=3)
    replay.default = Reply(body='{"ok": 1}')
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: client.webservice_post(f"fn_{i % 3}", {"i": i}), range(60)))
    assert results == [{"ok": 1}] * 60
    snap = client.snapshot()
    assert snap["requests_total"] == 60 and snap["calls_total"] == 60
    assert snap["requests_by_function"] == {"fn_0": 20, "fn_1": 20, "fn_2": 20}
    assert sorted(dict(s.form)["i"] for s in replay.seen) == sorted(str(i) for i in range(60))
    assert all(("wstoken", SECRET_TOKEN) in s.form for s in replay.seen)


def test_unusable_state_dir_falls_back_to_a_per_process_throttle(tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    clock = FakeClock()
    t = HostThrottle("https://lms.example.edu", 10, blocker / "sub", clock=clock)
    assert [t.reserve(), t.reserve()] == pytest.approx([0.0, 0.1])
    assert any("MOODLE_THROTTLE_DIR" in r.getMessage() for r in caplog.records)
