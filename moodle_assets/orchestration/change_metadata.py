"""The change-log part of a target's materialization metadata: counts by kind and a short sample."""

from __future__ import annotations

from typing import Any

from dagster import MetadataValue

from ..store.changelog import KINDS, ChangeSummary


def sample_markdown(summary: ChangeSummary) -> str:
    """The first changes as a markdown table (what the Dagster UI shows in the metadata panel)."""
    if not summary.sample:
        return "_no changes_"
    lines = ["| entity | Moodle key | kind | columns |", "|---|---|---|---|"]
    for change in summary.sample:
        columns = ", ".join(change.columns) or "-"
        lines.append(f"| {change.entity} | {change.moodle_key} | {change.kind} | {columns} |")
    if summary.total > len(summary.sample):
        lines.append(f"\n… and {summary.total - len(summary.sample)} more (`moodle-integration changes --run N`)")
    return "\n".join(lines)


def change_metadata(summary: ChangeSummary) -> dict[str, Any]:
    if not summary.enabled:
        return {"changes_logged": "off (MOODLE_CHANGELOG_RETENTION_DAYS=0)"}
    return {
        "changes_total": summary.total,
        "changes_by_kind": MetadataValue.json({kind: summary.by_kind.get(kind, 0) for kind in KINDS}),
        "changes_by_entity": MetadataValue.json(dict(sorted(summary.by_entity.items()))),
        "changes_sample": MetadataValue.md(sample_markdown(summary)),
    }
