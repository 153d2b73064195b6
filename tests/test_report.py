"""The HTML report as a browser shows it, hostile document text included, and live (partial) statistics."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time

import pytest

from refinery.pipeline.cli import main as cli
from refinery.pipeline.config import load_job
from refinery.pipeline.funnel import load_stats
from refinery.pipeline.run import run

JOB = """
input: {paths: ["%(dir)s/in/*.jsonl"], format: jsonl}
stages:
  - {stage: normalize}
  - {stage: length, min_words: 12}
  - {stage: length, name: long_docs, annotate_only: true, max_words: 60}
"""

HOSTILE = [
    {
        "id": "<img src=x onerror=alert(1)>",
        "text": "<script>document.title='pwned'</script> short",
        "url": "javascript:alert(2)",
    },
    {
        "id": "evil-2",
        "text": "</pre></div><script>alert(3)</script>",
        "url": 'https://x.test/"><script>alert(4)</script>',
    },
]


def browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no headless Chromium (Debian: apt-get install -y chromium)")


def chromium(tmp_path, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            browser(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, spine_data):
    root = tmp_path_factory.mktemp("report")
    (root / "in").mkdir()
    long_docs = [json.loads(line) for line in (spine_data / "inaugural-a.jsonl").read_text().splitlines()]
    long_docs = [d for d in long_docs if len(d["text"].split()) >= 12][:60]
    (root / "in" / "good.jsonl").write_text("".join(json.dumps(d) + "\n" for d in long_docs))
    (root / "in" / "hostile.jsonl").write_text("".join(json.dumps(d) + "\n" for d in HOSTILE))
    (root / "job.yaml").write_text(JOB % {"dir": root})
    run(load_job(root / "job.yaml"), root / "run", runner="local", workers=1)
    return root / "run"


def test_report_in_a_browser(run_dir, tmp_path, capsys):
    out = tmp_path / "report.html"
    assert cli(["report", str(run_dir), "-o", str(out)]) == 0
    page = out.read_text()
    assert "partial" not in capsys.readouterr().out
    # self-contained: nothing loaded from anywhere, no script at all
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page, re.I)
    assert "<script" not in page.lower() and "<img" not in page.lower()

    dom = chromium(tmp_path, "--dump-dom", out.as_uri()).stdout
    assert "<title>refinery report" in dom and "pwned" not in dom.split("</title>")[0]
    for stage in ("read", "normalize", "length", "long_docs"):
        assert f'data-stage="{stage}"' in dom
    for heading in ("Funnel: documents", "Funnel: bytes", "Drops by reason", "Score histograms", "Dropped examples"):
        assert heading in dom
    assert re.search(r"<td>too_few_words</td><td>dropped</td><td>2</td>", dom)
    assert re.search(r"<td>too_many_words</td><td>flagged</td>", dom)
    # the hostile documents are shown as text, never parsed as markup
    assert "&lt;script&gt;document.title='pwned'&lt;/script&gt; short" in dom
    assert "&lt;img src=x onerror=alert(1)&gt;" in dom
    assert "<script" not in dom.lower() and "<img" not in dom.lower()
    hist_bars = re.findall(r'<rect class="bar"', dom)
    assert len(hist_bars) == 28 + 24 + 28 + 24  # n_chars and n_words bins of both length stages


def test_report_screenshot_shows_the_funnel(run_dir, tmp_path):
    image = pytest.importorskip("PIL.Image")
    page, shot = tmp_path / "report.html", tmp_path / "shot.png"
    assert cli(["report", str(run_dir), "-o", str(page)]) == 0
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri())
    with image.open(shot) as img:
        rgb = img.convert("RGB")
        assert rgb.size == (1200, 1600)
        colors = rgb.getcolors(maxcolors=1 << 20)
    counts = {c: n for n, c in colors}
    assert counts.get((0x3B, 0x9D, 0x5A), 0) > 2000  # kept bars of the funnel
    assert counts.get((0x3B, 0x6F, 0xD8), 0) > 500  # histogram bars
    assert counts.get((0xD8, 0x57, 0x3B), 0) > 100  # removed documents and reasons


def test_live_statistics_while_a_job_runs(run_dir, tmp_path, capsys):
    live = tmp_path / "live"
    shutil.copytree(run_dir, live)
    final = load_stats(live)
    assert not any(s["partial"] for s in final)

    # a running job has written partials only
    shutil.rmtree(live / "stats")
    partial = load_stats(live)
    assert all(s["partial"] for s in partial)
    for a, b in zip(final, partial):
        assert {**a, "partial": True} == b

    # a rerun (or resumed run) writing new partials after the merged files makes them stale
    shutil.copytree(run_dir / "stats", live / "stats")
    part = next((live / "_parts" / "length").glob("*.json"))
    later = time.time() + 5
    os.utime(part, (later, later))
    flags = {s["stage"]: s["partial"] for s in load_stats(live)}
    assert flags == {"read": False, "normalize": False, "length": True, "long_docs": False}

    # stages that have not started yet are listed with zero figures
    shutil.rmtree(live / "_parts" / "long_docs")
    (live / "stats" / "long_docs.json").unlink()
    stats = {s["stage"]: s for s in load_stats(live)}
    assert stats["long_docs"]["docs_in"] == 0 and stats["long_docs"]["partial"]

    assert cli(["stats", str(live)]) == 0
    assert "partial" in capsys.readouterr().out
    assert cli(["report", str(live)]) == 0
    assert "partial" in capsys.readouterr().out
    page = (live / "stats" / "report.html").read_text()
    assert 'id="partial"' in page and 'length <span class="muted">(partial)</span>' in page
