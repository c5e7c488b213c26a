"""The one place that names the sync targets, their assets, jobs and run tags, and the
statuses and triggers of the sync history.

No other module spells these strings: import them from here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class SyncTarget(enum.StrEnum):
    COURSE_CATALOG = "COURSE_CATALOG"
    USER_DIRECTORY = "USER_DIRECTORY"
    ENROLLMENTS = "ENROLLMENTS"

    @classmethod
    def parse(cls, value: SyncTarget | str) -> SyncTarget:
        """Accept `ENROLLMENTS`, `enrollments` or `sync_enrollments`; raise ValueError naming the choices."""
        if isinstance(value, SyncTarget):
            return value
        text = str(value).strip()
        for target in cls:
            if text.upper() == target.value or text == TARGET_SPECS[target].job_name:
                return target
        choices = ", ".join(t.value for t in cls)
        raise ValueError(f"unknown target {value!r}; expected one of: {choices}")


class SyncStatus(enum.StrEnum):
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"


class SyncTrigger(enum.StrEnum):
    """Who asked for a sync; read from the `moodle/trigger` run tag (`from_tag`)."""

    SCHEDULE = "SCHEDULE"
    MANUAL = "MANUAL"
    API = "API"
    GRAPHQL = "GRAPHQL"
    CLI = "CLI"

    @classmethod
    def from_tag(cls, value: str | None) -> SyncTrigger:
        """The trigger a run tag names; MANUAL for a run started by hand (Dagster UI launchpad)."""
        text = (value or "").strip().upper()
        return cls(text) if text in cls.__members__ else cls.MANUAL


class LaunchOutcome(enum.StrEnum):
    """What a front door (HTTP trigger, admin page, CLI) did with a requested target."""

    LAUNCHED = "LAUNCHED"
    SKIPPED = "SKIPPED"


@dataclass(frozen=True)
class TargetSpec:
    target: SyncTarget
    asset_name: str
    job_name: str
    upstream: tuple[SyncTarget, ...]
    description: str


TARGET_SPECS: dict[SyncTarget, TargetSpec] = {
    SyncTarget.COURSE_CATALOG: TargetSpec(
        SyncTarget.COURSE_CATALOG,
        "course_catalog",
        "sync_course_catalog",
        (),
        "Moodle categories and courses (with prices) in course_category / course_catalog.",
    ),
    SyncTarget.USER_DIRECTORY: TargetSpec(
        SyncTarget.USER_DIRECTORY,
        "user_directory",
        "sync_user_directory",
        (),
        "Moodle users in the users table.",
    ),
    SyncTarget.ENROLLMENTS: TargetSpec(
        SyncTarget.ENROLLMENTS,
        "enrollments",
        "sync_enrollments",
        (SyncTarget.COURSE_CATALOG, SyncTarget.USER_DIRECTORY),
        "Who is in which course, active or not, roles and last access, in user_course_enrollment.",
    ),
}

SYNC_ALL_JOB_NAME = "sync_all"
ASSET_GROUP = "moodle"
CODE_LOCATION_NAME = "moodle_integration"

# Run tags: how a Dagster run says which target it syncs and who asked for it.
TAG_TARGET = "moodle/target"
TAG_TRIGGER = "moodle/trigger"
TAG_FORCE = "moodle/force"
# JSON {target: integration_sync_run.id} of rows claimed before launch (HTTP trigger, admin page, CLI).
TAG_SYNC_RUN_IDS = "moodle/sync_run_ids"
# Dagster's own tags that we read.
DAGSTER_RUN_KEY_TAG = "dagster/run_key"
SCHEDULE_SLOT_TAG = "moodle/schedule_slot"

# Dependency order: a run of several targets syncs the catalog and users before enrollments.
TARGET_ORDER = (SyncTarget.COURSE_CATALOG, SyncTarget.USER_DIRECTORY, SyncTarget.ENROLLMENTS)

ALL_JOB_NAMES: tuple[str, ...] = (*tuple(s.job_name for s in TARGET_SPECS.values()), SYNC_ALL_JOB_NAME)


def spec(target: SyncTarget | str) -> TargetSpec:
    return TARGET_SPECS[SyncTarget.parse(target) if isinstance(target, str) else target]


def target_for_job(job_name: str) -> SyncTarget | None:
    for s in TARGET_SPECS.values():
        if s.job_name == job_name:
            return s.target
    return None
