"""Reading merged statistics back and printing the funnel."""
from __future__ import annotations

import json
from pathlib import Path

import yaml


def load_stats(run_dir: str | Path) -> list[dict]:
    """The merged per-stage statistics of a run, in pipeline order."""
    run_dir = Path(run_dir)
    job = yaml.safe_load((run_dir / "job.yaml").read_text())
    names = ["read"] + [s["name"] for s in job["stages"]]
    out = []
    for name in names:
        path = run_dir / "stats" / f"{name}.json"
        if path.exists():
            out.append(json.loads(path.read_text()))
    return out


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
        share = 100.0 * s["docs_kept"] / s["docs_in"] if s["docs_in"] else 0.0
        reasons = {**s["dropped_by_reason"], **{f"error:{k}": v for k, v in s["errors_by_kind"].items()}}
        top = ", ".join(f"{k}={v}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])[:3])
        lines.append(
            f"{s['stage']:<14}{s['docs_in']:>10,}{s['docs_kept']:>10,}{s['docs_dropped']:>10,}{s['docs_errored']:>9,}"
            f"{share:>7.1f}%{_size(s['bytes_in']):>11}{_size(s['bytes_kept']):>12}  {top}"
        )
    return "\n".join(lines)
