"""Reading a run's statistics back, finished or live, and printing the funnel.

A finished run has merged statistics in RUN/stats/<stage>.json. While a job runs (or after it was
killed) workers have only written partials under RUN/_parts/<stage>/; those are merged here on the
fly and the figures are marked `partial`, so a user can watch a job without waiting for its end.
"""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from refinery.pipeline.readers import READ
from refinery.pipeline.stats import StageStats, merge_all


def _read_json(path: Path) -> dict | None:
    """A statistics file, or None when it vanished (a retried unit clears its parts) or is unreadable."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def stage_order(run_dir: str | Path) -> list[tuple[str, str]]:
    """(name, kind) of every stage of the run, `read` first, from the resolved RUN/job.yaml."""
    job = yaml.safe_load((Path(run_dir) / "job.yaml").read_text()) or {}
    return [(READ, READ)] + [(s["name"], s["stage"]) for s in job.get("stages") or []]


def load_stage(run_dir: Path, name: str, kind: str) -> dict:
    """One stage's statistics: the merged file when it is newer than every partial, else the
    partials merged now (`partial: true`)."""
    merged_path = run_dir / "stats" / f"{name}.json"
    parts = sorted((run_dir / "_parts" / name).glob("*.json"))
    if merged_path.exists() and _mtime(merged_path) >= max((_mtime(p) for p in parts), default=0.0):
        merged = _read_json(merged_path)
        if merged is not None:
            return {**merged, "partial": False}
    data = (_read_json(p) for p in parts)
    stats = merge_all((StageStats.from_dict(d) for d in data if d is not None), name, kind)
    return {**stats.to_dict(), "partial": True}


def load_stats(run_dir: str | Path) -> list[dict]:
    """The per-stage statistics of a run, in pipeline order; each has `partial` set when its
    figures come from the partial files of a running or interrupted job."""
    run_dir = Path(run_dir)
    return [load_stage(run_dir, name, kind) for name, kind in stage_order(run_dir)]


def is_partial(stats: list[dict]) -> bool:
    return any(s.get("partial") for s in stats)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def format_funnel(stats: list[dict]) -> str:
    header = f"{'stage':<14}{'in':>10}{'kept':>10}{'dropped':>10}{'errored':>9}{'kept %':>8}{'bytes in':>11}{'bytes kept':>12}  top reasons"
    lines = [header, "-" * len(header)]
    for s in stats:
        mark = "*" if s.get("partial") else ""
        share = 100.0 * s["docs_kept"] / s["docs_in"] if s["docs_in"] else 0.0
        reasons = {**s["dropped_by_reason"], **{f"error:{k}": v for k, v in s["errors_by_kind"].items()}}
        top = ", ".join(f"{k}={v}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])[:3])
        lines.append(
            f"{s['stage'] + mark:<14}{s['docs_in']:>10,}{s['docs_kept']:>10,}{s['docs_dropped']:>10,}{s['docs_errored']:>9,}"
            f"{share:>7.1f}%{_size(s['bytes_in']):>11}{_size(s['bytes_kept']):>12}  {top}"
        )
    if is_partial(stats):
        lines.append("* partial: merged from the partial statistics of a running or interrupted job")
    return "\n".join(lines)
