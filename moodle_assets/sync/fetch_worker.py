"""The enrolment fetch in a worker process, beside the process that diffs and writes.

The enrolment step is CPU work in Python from end to end: per request the HTTP client and the
JSON decoding, per row the mapper and the staged tuple (the fetch half); then per row the diff
against the stored rows, the change log and the insert (the write half). One process holds one
GIL, so both halves shared one core while the other idled (benchmarks/results/profile-M.md).
With the fetch in a child process (`MOODLE_SYNC_FETCH_PROCESS`; `auto` = catalogs of
`AUTO_MIN_COURSES` courses or more on a machine with two cores or more) the halves run side by
side: the child runs `course_fetch.courses_in_threads` with a client of the same settings (its
requests share the host-wide throttle, a file lock, with every other client on this host) and
streams each course's staged rows back as it completes; this process diffs and stages them
as they arrive, exactly as it does the results of its own threads.

Protocol: length-prefixed pickle frames. Parent to child on stdin: one line, the parent's
`sys.path` as JSON; one frame, the job (client settings, token, courses, page size,
concurrency, sync time, dialect, log level). stdin then stays open: its end (the parent exited
or was killed) ends the child at once. Child to parent on stdout, each with the child client's
metrics so far: ``("course", local id, Moodle id, marshal blob of rows, rejects, fetched,
withheld, metrics)``, ``("failed", local id, Moodle id, exception, metrics)`` for a per-course
error, ``("error", exception, metrics)`` for one that ends the step, ``("done", metrics)``;
and ``("log", level, logger name, message)`` for the client's log lines, re-emitted here. The
token travels only in the pipe: never in argv, the environment or a log line.
"""

from __future__ import annotations

import json
import logging
import marshal
import os
import pickle
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Generator, Sequence
from datetime import datetime
from typing import IO, Any

from resources.moodle_client import MoodleClient

from ..store.raw import RawValues
from .course_fetch import COURSE_ERRORS, Course, CourseResult, FetchedCourse, courses_in_threads
from .fetch import MoodleFetcher
from .options import FETCH_PROCESS_MODES

log = logging.getLogger(__name__)

# `auto` uses the worker for catalogs this large: below it the child's start-up (a Python
# process importing the client and mappers, ~0.5 s of CPU) costs more than it saves.
AUTO_MIN_COURSES = 100
_HEADER = struct.Struct(">I")
_BOOT = (
    "import sys, json; sys.path[:0] = json.loads(sys.stdin.buffer.readline()); "
    "from moodle_assets.sync.fetch_worker import child_main; raise SystemExit(child_main())"
)


class FetchWorkerFailed(RuntimeError):
    """The fetch worker process ended without finishing (killed, crashed, or could not start)."""


def wanted(mode: str, courses: int, client: Any) -> bool:
    """Whether this enrolment step fetches in a worker process (`mode` from `SyncOptions`)."""
    if mode not in FETCH_PROCESS_MODES:
        raise ValueError(f"fetch_process must be one of {', '.join(FETCH_PROCESS_MODES)}, got {mode!r}")
    if mode == "off" or not isinstance(client, MoodleClient):
        return False  # another client (a fixture, a replay) lives only in this process
    if mode == "on":
        return True
    return courses >= AUTO_MIN_COURSES and (os.cpu_count() or 1) >= 2


# --- frames ------------------------------------------------------------------------------------


def _write(stream: IO[bytes], message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _read(stream: IO[bytes]) -> Any:
    """The next frame, or None at the end of the stream."""
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None
    size = _HEADER.unpack(head)[0]
    data = stream.read(size)
    if len(data) < size:
        return None
    return pickle.loads(data)


def _sendable(exc: BaseException) -> BaseException:
    """`exc` if it survives pickling, else a plain error with its type and message."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return FetchWorkerFailed(f"{type(exc).__name__}: {exc}")


# --- the parent's side -------------------------------------------------------------------------


def courses_in_process(
    fetcher: MoodleFetcher,
    courses: Sequence[Course],
    now: datetime,
    raw: RawValues,
    *,
    concurrency: int,
    check: Callable[[], None],
) -> Generator[CourseResult, None, None]:
    """What `courses_in_threads` yields, fetched by a child process. The child's requests are
    added to this client's metrics when it ends, whatever the outcome; closing the iterator
    (an error here, `check()` raising) kills the child."""
    client = fetcher.client
    assert isinstance(client, MoodleClient)
    job = {
        "settings": client.settings,
        "token": client.worker_token(),
        "courses": list(courses),
        "page_size": fetcher.enrolment_page_size,
        "concurrency": concurrency,
        "now": now,
        "sqlite": raw.sqlite,
        "log_level": logging.getLogger("resources").getEffectiveLevel(),
    }
    child = subprocess.Popen([sys.executable, "-c", _BOOT], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    stdin, stdout = child.stdin, child.stdout
    assert stdin is not None and stdout is not None
    metrics: dict[str, Any] | None = None
    try:
        try:
            stdin.write(json.dumps(sys.path).encode() + b"\n")
            _write(stdin, job)
        except OSError as exc:
            raise FetchWorkerFailed(f"the enrolment fetch worker did not start ({exc})") from None
        while True:
            message = _read(stdout)
            if message is None:
                code = child.wait()
                raise FetchWorkerFailed(f"the enrolment fetch worker process ended early (exit code {code})")
            kind = message[0]
            if kind == "log":
                logging.getLogger(message[2]).log(message[1], message[3])
                continue
            metrics = message[-1]
            if kind == "course":
                _, local_id, moodle_id, blob, rejects, fetched, withheld, _ = message
                yield local_id, moodle_id, FetchedCourse(marshal.loads(blob), rejects, fetched, withheld)
            elif kind == "failed":
                _, local_id, moodle_id, failure, _ = message
                if not isinstance(failure, COURSE_ERRORS):
                    raise failure
                yield local_id, moodle_id, failure
            elif kind == "error":
                raise message[1]
            else:  # done
                return
            check()
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        stdin.close()
        stdout.close()
        if metrics is not None:
            client.metrics.add(metrics)


# --- the child's side --------------------------------------------------------------------------


class _FrameHandler(logging.Handler):
    def __init__(self, send: Callable[[Any], None]) -> None:
        super().__init__()
        self.send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.send(("log", record.levelno, record.name, record.getMessage()))
        except Exception:  # the parent is gone: the stdin watcher ends this process
            pass


def _exit_when_parent_goes(stdin: IO[bytes]) -> None:
    stdin.read()  # returns at end of stream: the parent closed the pipe or died
    os._exit(3)


def child_main() -> int:
    stdin = sys.stdin.buffer
    # The protocol owns the real stdout; a stray print goes to stderr instead.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    lock = threading.Lock()

    def send(message: Any) -> None:
        with lock:
            _write(out, message)

    job = _read(stdin)
    if job is None:
        return 2
    threading.Thread(target=_exit_when_parent_goes, args=(stdin,), daemon=True).start()
    root = logging.getLogger()
    root.handlers[:] = [_FrameHandler(send)]
    root.setLevel(job["log_level"])
    client = MoodleClient(job["settings"].url, job["token"], settings=job["settings"])
    fetcher = MoodleFetcher(client, enrolment_page_size=job["page_size"])
    raw = RawValues.for_dialect(sqlite=job["sqlite"])
    try:
        results = courses_in_threads(
            fetcher, job["courses"], job["now"], raw, concurrency=job["concurrency"], check=lambda: None
        )
        for local_id, moodle_id, result in results:
            if isinstance(result, FetchedCourse):
                blob = marshal.dumps(result.rows)
                send(
                    (
                        "course",
                        local_id,
                        moodle_id,
                        blob,
                        result.rejects,
                        result.fetched,
                        result.withheld,
                        client.snapshot(),
                    )
                )
            else:
                send(("failed", local_id, moodle_id, _sendable(result), client.snapshot()))
    except BaseException as exc:
        send(("error", _sendable(exc), client.snapshot()))
        return 1
    finally:
        client.close()
    send(("done", client.snapshot()))
    return 0
