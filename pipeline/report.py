"""The statistics report: one self-contained HTML page per run.

Everything is inline (CSS and SVG, no script, no network): the page opens from a file, an
artifact store or a mail attachment alike. Document text, ids and URLs are untrusted input,
so every value is escaped, and a Content-Security-Policy forbids scripts and remote loads
in case anything ever slipped through.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Callable, Literal

from refinery.pipeline.funnel import _size, is_partial, load_stats
from refinery.pipeline.page import CSP, STYLE, esc
from refinery.pipeline.rundir import REPORT, RunDir
from refinery.pipeline.stats import Histogram, StatsDict
from refinery.pipeline.storage import atomic_write, filesystem


def _edge(x: float) -> str:
    if x == 0:
        return "0"
    if abs(x) >= 1e4 or abs(x) < 1e-2:
        return f"{x:.0e}"
    return f"{x:.3g}"


def funnel_svg(
    stats: list[StatsDict],
    key_in: Literal["docs_in", "bytes_in"],
    key_kept: Literal["docs_kept", "bytes_kept"],
    label: Callable[[int], str],
) -> str:
    """Horizontal bars per stage: kept in green, removed (dropped or errored) in red."""
    width, left, row = 760, 130, 22
    top = max((s[key_in] for s in stats), default=0) or 1
    height = row * len(stats) + 8
    parts = [f'<svg role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}">']
    for i, s in enumerate(stats):
        y = 4 + i * row
        kept_w = (width - left - 110) * s[key_kept] / top
        lost_w = (width - left - 110) * max(s[key_in] - s[key_kept], 0) / top
        parts.append(f'<text x="{left - 6}" y="{y + 14}" text-anchor="end">{esc(s["stage"])}</text>')
        parts.append(
            f'<rect class="kept" x="{left}" y="{y}" width="{kept_w:.1f}" height="{row - 6}"><title>kept '
            f"{esc(label(s[key_kept]))}</title></rect>"
        )
        parts.append(
            f'<rect class="drop" x="{left + kept_w:.1f}" y="{y}" width="{lost_w:.1f}" '
            f'height="{row - 6}"><title>removed {esc(label(s[key_in] - s[key_kept]))}</title></rect>'
        )
        parts.append(
            f'<text x="{left + kept_w + lost_w + 6:.1f}" y="{y + 14}">{esc(label(s[key_kept]))} / '
            f"{esc(label(s[key_in]))}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def histogram_svg(name: str, hist: Histogram) -> str:
    """Bars over the fixed bins of a score histogram, with the end and middle edges labelled."""
    counts, edges = hist["counts"], hist["edges"]
    width, height, pad, bottom = 340, 150, 8, 34
    top = max(counts, default=0) or 1
    bar_w = (width - 2 * pad) / max(len(counts), 1)
    plot_h = height - bottom - 16
    log = len(edges) > 2 and edges[0] > 0 and not math.isclose(edges[1] - edges[0], edges[-1] - edges[-2], rel_tol=1e-6)
    parts = [
        f'<svg role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
        f'<text x="{pad}" y="12">{esc(name)}{" (log bins)" if log else ""} · {sum(counts):,} docs</text>',
    ]
    for i, c in enumerate(counts):
        h = plot_h * c / top
        x = pad + i * bar_w
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{16 + plot_h - h:.1f}" width="{max(bar_w - 1, 1):.1f}" height="{h:.1f}">'
            f"<title>[{esc(_edge(edges[i]))}, {esc(_edge(edges[i + 1]))}): {c:,}</title></rect>"
        )
    base = 16 + plot_h
    parts.append(f'<line class="axis" x1="{pad}" y1="{base}" x2="{width - pad}" y2="{base}"/>')
    mid = len(edges) // 2
    for idx, anchor in ((0, "start"), (mid, "middle"), (len(edges) - 1, "end")):
        parts.append(
            f'<text x="{pad + idx * bar_w:.1f}" y="{base + 14}" text-anchor="{anchor}">{esc(_edge(edges[idx]))}</text>'
        )
    parts.append(f'<text x="{width - pad}" y="12" text-anchor="end">max {top:,}</text></svg>')
    return "".join(parts)


def _funnel_table(stats: list[StatsDict]) -> str:
    rows = [
        '<table id="funnel"><tr><th>stage</th><th>kind</th><th>docs in</th><th>kept</th><th>dropped</th>'
        "<th>errored</th><th>kept %</th><th>bytes in</th><th>bytes kept</th><th>seconds</th></tr>"
    ]
    for s in stats:
        share = 100.0 * s["docs_kept"] / s["docs_in"] if s["docs_in"] else 0.0
        mark = ' <span class="muted">(partial)</span>' if s.get("partial") else ""
        rows.append(
            f'<tr data-stage="{esc(s["stage"])}"><td>{esc(s["stage"])}{mark}</td><td>{esc(s["kind"])}</td>'
            f"<td>{s['docs_in']:,}</td><td>{s['docs_kept']:,}</td><td>{s['docs_dropped']:,}</td><td>{s['docs_errored']:,}</td>"
            f"<td>{share:.1f}%</td><td>{esc(_size(s['bytes_in']))}</td><td>{esc(_size(s['bytes_kept']))}</td>"
            f"<td>{s.get('seconds', 0):.2f}</td></tr>"
        )
    rows.append("</table>")
    return "".join(rows)


def _reasons(stats: list[StatsDict]) -> str:
    out = []
    for s in stats:
        reasons: list[tuple[str, int, str | None]] = [(r, n, None) for r, n in s["dropped_by_reason"].items()]
        reasons += [(k, n, "error") for k, n in s["errors_by_kind"].items()]
        if not reasons:
            continue
        failed = s.get("failed_by_rule") or {}
        # an annotate-only stage reports its reasons but drops nothing
        label = "flagged" if not s["docs_dropped"] else "dropped"
        top = max(n for _, n, _ in reasons) or 1
        out.append(
            f'<h3>{esc(s["stage"])}</h3><table class="reasons"><tr><th>reason</th><th>as</th><th>documents</th>'
            "<th>% of stage input</th><th>failed the rule (any order)</th><th></th></tr>"
        )
        for reason, n, what in sorted(reasons, key=lambda r: -r[1]):
            share = 100.0 * n / s["docs_in"] if s["docs_in"] else 0.0
            bar = (
                f'<svg width="160" height="12"><rect class="drop" x="0" y="1" width="{160 * n / top:.1f}" '
                'height="10"/></svg>'
            )
            any_order = f"{failed[reason]:,}" if reason in failed else ""
            out.append(
                f"<tr><td>{esc(reason)}</td><td>{what or label}</td><td>{n:,}</td><td>{share:.2f}%</td>"
                f"<td>{any_order}</td><td>{bar}</td></tr>"
            )
        out.append("</table>")
    return "".join(out) or '<p class="muted">No document was dropped.</p>'


def _extras(stats: list[StatsDict]) -> str:
    rows = [
        f"<tr><td>{esc(s['stage'])}</td><td>{esc(k)}</td><td>{v:,.6g}</td></tr>"
        for s in stats
        for k, v in sorted((s.get("extra") or {}).items())
    ]
    if not rows:
        return ""
    return (
        '<h2 id="figures">Stage figures</h2><table><tr><th>stage</th><th>figure</th><th>value</th></tr>'
        + "".join(rows)
        + "</table>"
    )


def _histograms(stats: list[StatsDict]) -> str:
    out = []
    for s in stats:
        if not s["histograms"]:
            continue
        charts = "".join(
            f'<div class="hist">{histogram_svg(name, h)}</div>' for name, h in sorted(s["histograms"].items())
        )
        out.append(f'<h3>{esc(s["stage"])}</h3><div class="hists">{charts}</div>')
    return "".join(out) or '<p class="muted">No stage recorded a score.</p>'


def _examples(stats: list[StatsDict]) -> str:
    out = []
    for s in stats:
        if not s["examples"]:
            continue
        out.append(f"<h3>{esc(s['stage'])}</h3>")
        for reason, rows in sorted(s["examples"].items()):
            out.append(f"<details open><summary>{esc(reason)} · {len(rows)} example(s)</summary>")
            for row in rows:
                url = f" · {esc(row.get('url'))}" if row.get("url") else ""
                out.append(
                    f'<div class="example"><div class="muted">{esc(row.get("id"))}{url}</div>'
                    f"<pre>{esc(row.get('text'))}</pre></div>"
                )
            out.append("</details>")
    return "".join(out) or '<p class="muted">No dropped examples.</p>'


def render(run_dir: str | RunDir, stats: list[StatsDict] | None = None) -> str:
    """The report page of a run (a path or URI) as an HTML string."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    stats = load_stats(run) if stats is None else stats
    partial = is_partial(stats)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    docs_read, bytes_read = (stats[0]["docs_in"], stats[0]["bytes_in"]) if stats else (0, 0)
    docs_kept, bytes_kept = (stats[-1]["docs_kept"], stats[-1]["bytes_kept"]) if stats else (0, 0)
    banner = (
        (
            '<div class="partial" id="partial">Partial figures: the job is still running or was interrupted; '
            "these numbers are merged from the statistics its workers have written so far.</div>"
        )
        if partial
        else ""
    )
    return "".join(
        [
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
            "<title>refinery report · "
            f"{esc(run.uri.rstrip('/').rsplit('/', 1)[-1])}</title><style>{STYLE}</style></head><body>",
            f'<h1>refinery report</h1><div class="muted">run <code>{esc(run.uri)}</code> · written {when}'
            f"{' · partial' if partial else ''}</div>",
            banner,
            f'<p id="summary">{docs_read:,} documents read ({esc(_size(bytes_read))}), '
            f"{docs_kept:,} kept ({esc(_size(bytes_kept))}) after {max(len(stats) - 1, 0)} "
            "stage(s).</p>",
            '<h2 id="funnel-docs">Funnel: documents</h2>',
            funnel_svg(stats, "docs_in", "docs_kept", lambda n: f"{n:,}"),
            '<h2 id="funnel-bytes">Funnel: bytes</h2>',
            funnel_svg(stats, "bytes_in", "bytes_kept", _size),
            _funnel_table(stats),
            '<h2 id="reasons">Drops by reason</h2>',
            _reasons(stats),
            _extras(stats),
            '<h2 id="histograms">Score histograms</h2>',
            _histograms(stats),
            '<h2 id="examples">Dropped examples</h2>',
            _examples(stats),
            "</body></html>\n",
        ]
    )


def write_report(run_dir: str | RunDir, out: str | None = None, stats: list[StatsDict] | None = None) -> str:
    """Write the report (default RUN/stats/report.html; `out` may be a path or URI) atomically;
    returns where it went."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    page = render(run, stats)
    if out is None:
        run.write_text(REPORT, page)
        return run.location(REPORT)
    fs, path = filesystem(str(out))
    atomic_write(fs, path, page.encode())
    return str(out)
