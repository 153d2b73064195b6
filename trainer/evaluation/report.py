"""The training report: training loss and every evaluation metric over steps, and the needle
grid of the newest evaluated checkpoint as a heat map; one static page (inline SVG, no script)
at TRAIN_OUT/eval/report.html, escaped and locked down like the data report."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

from refinery.pipeline.page import CSP, STYLE, esc
from refinery.trainer.checkpoint import atomic_write_text

_CELL = re.compile(r"^retrieved/L(\d+)/d([0-9.]+)$")


def _jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line the trainer was writing when read
    return out


def line_svg(title: str, points: list[tuple[float, float]]) -> str:
    """A line over (step, value) points, with the first and last values labelled."""
    width, height, left, pad = 340, 170, 48, 10
    points = sorted(points)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5

    def at(x, y):
        return (
            left + (width - left - pad) * ((x - x0) / (x1 - x0) if x1 > x0 else 0.5),
            20 + (height - 50) * (1 - (y - y0) / (y1 - y0)),
        )

    coords = " ".join(f"{cx:.1f},{cy:.1f}" for cx, cy in (at(x, y) for x, y in points))
    parts = [
        f'<svg role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
        f'<text x="{pad}" y="12">{esc(title)}</text>',
        f'<line class="axis" x1="{left}" y1="{height - 30}" x2="{width - pad}" y2="{height - 30}"/>',
        f'<polyline points="{coords}" fill="none" stroke="#3b6fd8" stroke-width="1.5"/>',
    ]
    for cx, cy in (at(x, y) for x, y in points) if len(points) <= 40 else ():
        parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="2.2" fill="#3b6fd8"/>')
    parts.append(
        f'<text x="{left - 4}" y="24" text-anchor="end">{y1:.4g}</text>'
        f'<text x="{left - 4}" y="{height - 32}" text-anchor="end">{y0:.4g}</text>'
        f'<text x="{left}" y="{height - 16}">step {x0:g}</text>'
        f'<text x="{width - pad}" y="{height - 16}" text-anchor="end">{x1:g}</text></svg>'
    )
    return "".join(parts)


def heatmap_svg(title: str, cells: dict[tuple[int, float], float]) -> str:
    """Lengths across, depths down; the share retrieved as the cell's shade and its label."""
    lengths, depths = sorted({k[0] for k in cells}), sorted({k[1] for k in cells})
    size, left, top = 46, 56, 30
    width, height = left + size * len(lengths) + 10, top + size * len(depths) + 30
    parts = [
        f'<svg role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
        f'<text x="4" y="12">{esc(title)}</text>',
    ]
    for j, depth in enumerate(depths):
        parts.append(
            f'<text x="{left - 4}" y="{top + j * size + size / 2 + 4:.0f}" text-anchor="end">depth {depth:g}</text>'
        )
        for i, length in enumerate(lengths):
            value = cells.get((length, depth))
            shade = (
                "#eceef2"
                if value is None
                else f"rgb({int(216 - 157 * value)},{int(87 + 70 * value)},{int(59 + 31 * value)})"
            )
            label = "–" if value is None else f"{value:.2f}"
            x, y = left + i * size, top + j * size
            parts.append(
                f'<rect x="{x}" y="{y}" width="{size - 2}" height="{size - 2}" fill="{shade}"/>'
                f'<text x="{x + size / 2 - 1:.0f}" y="{y + size / 2 + 4:.0f}" text-anchor="middle">{label}</text>'
            )
    for i, length in enumerate(lengths):
        parts.append(
            f'<text x="{left + i * size + size / 2 - 1:.0f}" y="{top + len(depths) * size + 14}" '
            f'text-anchor="middle">{length}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def render(train_out: str | Path) -> str:
    root = Path(train_out)
    training = [r for r in _jsonl(root / "metrics.jsonl") if "loss" in r]
    results = _jsonl(root / "eval" / "results.jsonl")
    plots = []
    if training:
        plots.append(line_svg("training loss", [(r["step"], r["loss"]) for r in training]))
        valid = [(r["step"], r["valid_loss"]) for r in training if "valid_loss" in r]
        if valid:
            plots.append(line_svg("validation loss (in training)", valid))
    series: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for r in results:
        if not _CELL.match(r["metric"]):
            series.setdefault((r["task"], r["metric"]), []).append((r["step"], r["value"]))
    plots += [line_svg(f"{task} · {metric}", points) for (task, metric), points in sorted(series.items())]
    grids = []
    for task in sorted({r["task"] for r in results if _CELL.match(r["metric"])}):
        newest = max(r["step"] for r in results if r["task"] == task)
        cells = {
            (int(m.group(1)), float(m.group(2))): r["value"]
            for r in results
            if r["task"] == task and r["step"] == newest and (m := _CELL.match(r["metric"]))
        }
        grids.append(heatmap_svg(f"{task} · retrieved at step {newest} (length × depth)", cells))
    steps = sorted({r["step"] for r in results})
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}"><title>refinery training report · '
        f"{esc(root.name)}</title><style>{STYLE}</style></head><body>"
        f'<h1>Training report</h1><p class="muted">{esc(root)} · {len(training)} steps logged · '
        f"{len(steps)} checkpoints evaluated · {when}</p>"
        f'<h2>Loss and evaluation metrics over steps</h2><div class="hists">'
        + "".join(f'<div class="hist">{p}</div>' for p in plots)
        + "</div>"
        + (
            '<h2>Needle in a haystack</h2><div class="hists">'
            + "".join(f'<div class="hist">{g}</div>' for g in grids)
            + "</div>"
            if grids
            else ""
        )
        + "</body></html>\n"
    )


def write_report(train_out: str | Path, out: str | Path | None = None) -> Path:
    path = Path(out) if out else Path(train_out) / "eval" / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, render(train_out))
    return path
