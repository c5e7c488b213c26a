"""What a target needs before it runs, and what its failure means for the targets after it.

- **Refuse, do not auto-run.** ENROLLMENTS maps Moodle enrolments onto stored courses and users;
  before COURSE_CATALOG and USER_DIRECTORY have ever synced successfully it would fetch every
  course's participants and store nothing ("SUCCESS, 0 rows"). It is refused instead: its row
  is closed FAILED with the reason and the fix, before a single Moodle request. (Running the
  upstream targets implicitly would hide a sync the operator did not ask for; `sync --all`
  runs them in order.)
- **Not run: upstream failed.** When a target fails, the targets of the same Dagster run that
  depend on it will not run (Dagster skips their steps): their rows are closed at once, by the
  failing step itself, instead of staying RUNNING until the run-status sensor sweeps them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..core.targets import SYNC_ALL_JOB_NAME, TARGET_ORDER, TARGET_SPECS, SyncTarget, target_for_job
from ..history import SyncHistory

NOUNS = {
    SyncTarget.COURSE_CATALOG: "courses",
    SyncTarget.USER_DIRECTORY: "users",
    SyncTarget.ENROLLMENTS: "enrollments",
}


def never_synced_reason(missing: Iterable[SyncTarget]) -> str:
    """``courses and users have never been synced: run COURSE_CATALOG and USER_DIRECTORY first (or sync all)``."""
    missing = [t for t in TARGET_ORDER if t in set(missing)]
    nouns = " and ".join(NOUNS[t] for t in missing)
    names = " and ".join(t.value for t in missing)
    return f"{nouns} have never been synced: run {names} first (or sync all)"


def refusal(history: SyncHistory, target: SyncTarget) -> str | None:
    """Why `target` may not sync now (an upstream target never synced successfully), or None."""
    upstream = TARGET_SPECS[target].upstream
    if not upstream:
        return None
    missing = history.never_succeeded(upstream)
    return never_synced_reason(missing) if missing else None


def upstream_failed_reason(failed: SyncTarget) -> str:
    return f"not run: upstream failed ({failed.value} failed in the same Dagster run)"


def _depends_on(target: SyncTarget, upstream: SyncTarget) -> bool:
    direct = TARGET_SPECS[target].upstream
    return upstream in direct or any(_depends_on(t, upstream) for t in direct)


def run_targets(job_name: str, asset_names: Iterable[str] | None, claims: Mapping[str, int]) -> list[SyncTarget]:
    """The targets a Dagster run syncs: those claimed for it, else its asset selection, else its job's."""
    if claims:
        return [t for t in TARGET_ORDER if t.value in claims]
    if asset_names is not None:
        names = set(asset_names)
        return [t for t in TARGET_ORDER if TARGET_SPECS[t].asset_name in names]
    if job_name == SYNC_ALL_JOB_NAME:
        return list(TARGET_ORDER)
    own = target_for_job(job_name)
    return [own] if own is not None else []


def downstream(failed: SyncTarget, in_run: Iterable[SyncTarget]) -> list[SyncTarget]:
    """The targets of the run that depend on `failed` (and so will not run)."""
    return [t for t in in_run if t is not failed and _depends_on(t, failed)]
