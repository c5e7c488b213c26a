"""What the sync asks Moodle, with the fewest and cheapest requests Moodle allows.

See docs/moodle-facts.md §11 and the README's "How a sync talks to Moodle":
- categories: 1 request (`core_course_get_categories`, no criteria);
- courses: 1 request (`core_course_get_courses_by_field`, no field: never fails whole for one
  inaccessible course, unlike `core_course_get_courses`);
- users: the email-wildcard search costs Moodle ~3.3 ms per user in ONE request (70 s at 20k
  users, past many proxies' timeouts) and misses users without an email. Instead we list every
  user id through the site course's participants (`courseid=1`, `userfields=id`, paged; Moodle
  returns every user there), then fetch details by id in batches
  (`core_user_get_users_by_field`), each request a bounded ~3.5 s of server time (1000 users);
- enrolments: per course, two paged passes with `userfields=id,lastcourseaccess,roles`:
  `onlyactive=1` (active) and `onlysuspended=1` (enrolled, not active) — 3x cheaper for Moodle
  than all fields, and it is the only way Moodle tells active from not.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from resources.moodle_errors import MoodleError, MoodleUnknownError, raise_for_warnings

from .options import SyncOptions

_DEFAULTS = SyncOptions()
SITE_COURSE_ID = 1
ENROLMENT_USERFIELDS = "id,lastcourseaccess,roles"


class MoodleFetcher:
    def __init__(
        self,
        client: Any,
        *,
        enrolment_page_size: int = _DEFAULTS.enrolment_page_size,
        user_id_page_size: int = _DEFAULTS.user_id_page_size,
        user_batch_size: int = _DEFAULTS.user_batch_size,
    ):
        self.client = client
        self.enrolment_page_size = enrolment_page_size
        self.user_id_page_size = user_id_page_size
        self.user_batch_size = user_batch_size

    def categories(self) -> list[Any]:
        rows = self.client.webservice_post("core_course_get_categories", {})
        return _expect_list(rows, "core_course_get_categories")

    def courses(self) -> list[Any]:
        answer = self.client.webservice_post("core_course_get_courses_by_field", {})
        if not isinstance(answer, dict) or not isinstance(answer.get("courses"), list):
            raise MoodleUnknownError(
                f"core_course_get_courses_by_field answered {type(answer).__name__}, not {{courses, warnings}}",
                wsfunction="core_course_get_courses_by_field",
            )
        raise_for_warnings(answer, "core_course_get_courses_by_field")
        return answer["courses"]

    def user_ids(self) -> list[int]:
        """Every user id Moodle has, from the site course's participant list (ids only)."""
        ids: list[int] = []
        pages = self.client.paginate(
            "core_enrol_get_enrolled_users",
            {"courseid": SITE_COURSE_ID, "options": [{"name": "userfields", "value": "id"}]},
            page_size=self.user_id_page_size,
        )
        for page in pages:
            for row in page:
                uid = row.get("id") if isinstance(row, dict) else None
                if isinstance(uid, int) and not isinstance(uid, bool):
                    ids.append(uid)
        return sorted(set(ids))

    def user_batches(self, ids: Sequence[int]) -> Iterator[Sequence[int]]:
        for start in range(0, len(ids), self.user_batch_size):
            yield ids[start : start + self.user_batch_size]

    def users_by_id(self, ids: Sequence[int]) -> list[Any]:
        rows = self.client.webservice_post(
            "core_user_get_users_by_field", {"field": "id", "values": [str(i) for i in ids]}
        )
        return _expect_list(rows, "core_user_get_users_by_field")

    def course_enrolments(self, moodle_course_id: int) -> tuple[list[Any], list[Any]]:
        """(active rows, not-active rows) of one course."""
        return (
            self._enrolled(moodle_course_id, "onlyactive"),
            self._enrolled(moodle_course_id, "onlysuspended"),
        )

    def _enrolled(self, moodle_course_id: int, flag: str) -> list[Any]:
        rows: list[Any] = []
        params = {
            "courseid": moodle_course_id,
            "options": [{"name": flag, "value": 1}, {"name": "userfields", "value": ENROLMENT_USERFIELDS}],
        }
        for page in self.client.paginate("core_enrol_get_enrolled_users", params, page_size=self.enrolment_page_size):
            rows.extend(page)
        return rows


def _expect_list(rows: Any, wsfunction: str) -> list[Any]:
    if not isinstance(rows, list):
        raise MoodleUnknownError(f"{wsfunction} answered {type(rows).__name__}, expected a list", wsfunction=wsfunction)
    return rows


__all__ = ["SITE_COURSE_ID", "MoodleError", "MoodleFetcher"]
