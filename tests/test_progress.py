"""The progress line of a run caught half way: units, documents, share done, ETA, slowest stage."""

from __future__ import annotations

import gzip
import json
import re
import shutil
from pathlib import Path

import pytest

from refinery.pipeline.config import validate
from refinery.pipeline.progress import Progress, duration
from refinery.pipeline.run import run
from refinery.pipeline.rundir import RunDir
from refinery.pipeline.storage import file_sizes

PAGES = Path(__file__).resolve().parent / "data" / "web" / "extracted.jsonl.gz"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished local run over two inputs (one plain, one gzip), each read in several chunks."""
    tmp = tmp_path_factory.mktemp("progress")
    with gzip.open(PAGES, "rt") as fh:
        lines = fh.read().splitlines()[:300]
    (tmp / "a.jsonl").write_text("\n".join(lines[:150]) + "\n")
    with gzip.open(tmp / "b.jsonl.gz", "wt") as fh:
        fh.write("\n".join(lines[150:]) + "\n")
    job = validate(
        {
            "input": {
                "paths": [str(tmp / "a.jsonl"), str(tmp / "b.jsonl.gz")],
                "format": "jsonl",
                "batch_bytes": 50_000,
            },
            "stages": [{"stage": "normalize"}, {"stage": "rules"}],
        }
    )
    run(job, tmp / "run", runner="local", workers=1)
    return tmp, job.files


def test_a_run_half_way(finished, tmp_path):
    tmp, files = finished
    run_dir = tmp_path / "run"
    shutil.copytree(tmp / "run", run_dir)
    # unit 1 (the gzip file) is in progress: no marker, only its first two chunks are done
    (run_dir / "_done" / "s0-000001").unlink()
    for stage in ("read", "normalize", "rules"):
        for part in sorted((run_dir / "_parts" / stage).glob("s0-000001-*.json"))[2:]:
            part.unlink()
    run = RunDir(run_dir)
    units = dict(enumerate(files))
    sizes = {u: s for u, s in zip(units, file_sizes(files).values())}
    assert sizes == {0: Path(files[0]).stat().st_size, 1: Path(files[1]).stat().st_size}
    line = Progress(run, 0, "read", units, sizes).line()

    parts = {
        stage: [json.loads(p.read_text()) for p in sorted((run_dir / "_parts" / stage).glob("s0-*.json"))]
        for stage in ("read", "normalize", "rules")
    }
    read = {
        u: sum(json.loads(p.read_text())["bytes_in"] for p in (run_dir / "_parts" / "read").glob(f"s0-00000{u}-*.json"))
        for u in (0, 1)
    }
    done = (sizes[0] + min(sizes[1], read[1] * sizes[0] / read[0])) / (sizes[0] + sizes[1])
    docs = sum(p["docs_in"] for p in parts["read"])
    seconds = {stage: sum(p["seconds"] for p in found) for stage, found in parts.items()}
    slowest = max(seconds, key=seconds.get)
    assert line.startswith(f"1/2 units, {docs:,} docs, ")
    assert f", {done:.0%} done, ETA " in line and 0 < done < 1
    assert line.endswith(f"; slowest stage: {slowest} ({seconds[slowest] / sum(seconds.values()):.0%} of stage time)")

    # before any unit has finished, a compressed file's progress is guessed at 4 bytes read per stored byte
    (run_dir / "_done" / "s0-000000").unlink()
    for part in (run_dir / "_parts" / "read").glob("s0-000000-*.json"):
        part.unlink()
    early = Progress(run, 0, "read", units, sizes).line()
    guess = min(sizes[1], read[1] / 4) / (sizes[0] + sizes[1])
    assert early.startswith("0/2 units") and f", {guess:.0%} done" in early


def test_a_finished_segment_and_durations(finished):
    tmp, files = finished
    line = Progress(
        RunDir(tmp / "run"), 0, "read", dict(enumerate(files)), dict(enumerate(file_sizes(files).values()))
    ).line()
    assert re.match(r"2/2 units, 300 docs, .* MB/s, 100% done; slowest stage: \w+ \(\d+% of stage time\)$", line), line
    assert [duration(s) for s in (5, 75, 7322)] == ["5s", "1m15s", "2h02m"]
