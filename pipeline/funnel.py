"""Reading a run's statistics back, finished or live, and printing the funnel.

A finished run has merged statistics in RUN/stats/<stage>.json. While a job runs (or after it was
killed) workers have only written partials under RUN/_parts/<stage>/; those are merged here on the
fly and the figures are marked `partial`, so a user can watch a job without waiting for its end.
"""

from __future__ import annotations

import json

import yaml

from refinery.pipeline.readers import READ
from refinery.pipeline.rundir import PARTS, STATS, RunDir
from refinery.pipeline.stats import StageStats, StatsDict, merge_all


def _read_json(run: RunDir, name: str) -> StatsDict | None:
    """A statistics file, or None when it vanished (a retried unit clears its parts) or is unreadable."""
    try:
        stats: StatsDict = json.loads(run.read_text(name))
        return stats
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def stage_order(run: RunDir) -> list[tuple[str, str]]:
    """(name, kind) of every stage of the run, `read` first, from the resolved RUN/job.yaml."""
    job = yaml.safe_load(run.read_text(run.job)) or {}
    return [(READ, READ)] + [(s["name"], s["stage"]) for s in job.get("stages") or []]


def load_stage(run: RunDir, name: str, kind: str) -> StatsDict:
    """One stage's statistics: the merged file when it is newer than every partial, else the
    partials merged now (`partial: true`)."""
    merged_name = run.stats_file(name)
    parts = run.mtimes(f"{PARTS}/{name}")
    merged_time = run.mtimes(STATS).get(merged_name)
    if merged_time is not None and merged_time >= max(parts.values(), default=0.0):
        merged = _read_json(run, merged_name)
        if merged is not None:
            return {**merged, "partial": False}
    data = (_read_json(run, p) for p in sorted(parts))
    stats = merge_all((StageStats.from_dict(d) for d in data if d is not None), name, kind)
    return {**stats.to_dict(), "partial": True}


def load_stats(run_dir: str | RunDir) -> list[StatsDict]:
    """The per-stage statistics of a run (a path or URI), in pipeline order; each has `partial`
    set when its figures come from the partial files of a running or interrupted job."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    return [load_stage(run, name, kind) for name, kind in stage_order(run)]


def is_partial(stats: list[StatsDict]) -> bool:
    return any(s.get("partial") for s in stats)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def format_funnel(stats: list[StatsDict]) -> str:
    header = (
        f"{'stage':<14}{'in':>10}{'kept':>10}{'dropped':>10}{'errored':>9}{'kept %':>8}"
        f"{'bytes in':>11}{'bytes kept':>12}  top reasons"
    )
    lines = [header, "-" * len(header)]
    for s in stats:
        mark = "*" if s.get("partial") else ""
        share = 100.0 * s["docs_kept"] / s["docs_in"] if s["docs_in"] else 0.0
        reasons = {**s["dropped_by_reason"], **{f"error:{k}": v for k, v in s["errors_by_kind"].items()}}
        top = ", ".join(f"{k}={v}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])[:3])
        lines.append(
            f"{s['stage'] + mark:<14}{s['docs_in']:>10,}{s['docs_kept']:>10,}{s['docs_dropped']:>10,}"
            f"{s['docs_errored']:>9,}"
            f"{share:>7.1f}%{_size(s['bytes_in']):>11}{_size(s['bytes_kept']):>12}  {top}"
        )
    if is_partial(stats):
        lines.append("* partial: merged from the partial statistics of a running or interrupted job")
    return "\n".join(lines)
