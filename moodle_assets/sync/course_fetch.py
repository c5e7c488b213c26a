"""One course's enrolments fetched, mapped and staged; and every course's, in threads.

`fetch_course` is the fetch half of the enrolment step (two paged passes, the mapper, the
driver-ready staged tuples of `RawValues.stage_enrollment`), pure of the database, run in the
fetch threads so the step's own thread only diffs and stages. `courses_in_threads` yields, per
course as it completes, either its `FetchedCourse` or the per-course `MoodleError` the caller
decides about (gone, refused); anything else raises.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from resources.moodle_errors import MoodleAccessError, MoodleMissingRecordError

from .. import mappers
from ..store.raw import RawValues
from .fetch import MoodleFetcher

# The per-course failures the enrolment step handles itself (a course gone since the catalog
# sync; a course whose participants this token may not read); any other error ends the step.
COURSE_ERRORS = (MoodleMissingRecordError, MoodleAccessError)


@dataclass
class FetchedCourse:
    """One course's mapped enrolments as staged tuples, with what the run reports about them."""

    rows: list[tuple[Any, ...]]
    rejects: list[tuple[int | None, str]]  # (moodle user id or None, reason)
    fetched: int  # rows Moodle returned, rejected ones included
    withheld: dict[str, int]  # field name -> rows whose value Moodle did not show this token


def rejections(batch: mappers.MappedBatch) -> list[tuple[int | None, str]]:
    return [(r.moodle_id, r.reason) for r in batch.rejected]


def withheld_counts(records: Sequence[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in records:
        for name in record.withheld:
            counts[name] = counts.get(name, 0) + 1
    return counts


def fetch_course(fetcher: MoodleFetcher, moodle_course_id: int, now: datetime, raw: RawValues) -> FetchedCourse:
    active_rows, inactive_rows = fetcher.course_enrolments(moodle_course_id)
    active = mappers.map_rows(
        mappers.map_moodle_enrollment_row, active_rows, moodle_course_id=moodle_course_id, is_active=True, synced_at=now
    )
    inactive = mappers.map_rows(
        mappers.map_moodle_enrollment_row,
        inactive_rows,
        moodle_course_id=moodle_course_id,
        is_active=False,
        synced_at=now,
    )
    del active_rows, inactive_rows
    # The two lists are disjoint in Moodle; if a user moved between the two calls, active wins.
    active_ids = {r.moodle_user_id for r in active.records}
    records = active.records + [r for r in inactive.records if r.moodle_user_id not in active_ids]
    stage = raw.stage_enrollment
    return FetchedCourse(
        rows=[stage(r) for r in records],
        rejects=rejections(active) + rejections(inactive),
        fetched=active.fetched + inactive.fetched,
        withheld=withheld_counts(records),
    )


Course = tuple[int, int]  # (local course id, Moodle course id)
CourseResult = tuple[int, int, "FetchedCourse | MoodleAccessError | MoodleMissingRecordError"]


def courses_in_threads(
    fetcher: MoodleFetcher,
    courses: Sequence[Course],
    now: datetime,
    raw: RawValues,
    *,
    concurrency: int,
    check: Callable[[], None],
) -> Generator[CourseResult, None, None]:
    """Each course's result as it completes, `concurrency` courses in flight and at most twice
    that many held (memory stays flat). `check()` runs after each completion; what it raises,
    like any error that is not a per-course one, cancels the courses not started and propagates."""
    queue = deque(courses)
    window = max(1, concurrency) * 2
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        pending: dict[Future[FetchedCourse], Course] = {}
        try:
            while queue or pending:
                while queue and len(pending) < window:
                    local_id, moodle_id = queue.popleft()
                    pending[pool.submit(fetch_course, fetcher, moodle_id, now, raw)] = (local_id, moodle_id)
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                check()
                for future in finished:
                    local_id, moodle_id = pending.pop(future)
                    try:
                        result: Any = future.result()
                    except COURSE_ERRORS as exc:
                        result = exc
                    yield local_id, moodle_id, result
        finally:
            for future in pending:
                future.cancel()
