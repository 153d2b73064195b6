"""A run killed with SIGKILL halfway and run again ends identical to an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq

UNITS = 16


def make_inputs(folder, spine_data):
    lines = (spine_data / "inaugural-a.jsonl").read_text().splitlines()
    for unit in range(UNITS):
        with open(folder / f"in-{unit:02d}.jsonl", "w") as fh:
            for rep in range(6):
                for i, line in enumerate(lines):
                    doc = json.loads(line)
                    fh.write(json.dumps({"id": f"{unit}-{rep}-{i}", "text": doc["text"]}) + "\n")


def run_cli(conf, out):
    return subprocess.Popen(
        [sys.executable, "-m", "refinery.pipeline.cli", "run", str(conf), "--out", str(out), "--runner", "local"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def snapshot(run_dir):
    docs = pq.read_table(run_dir / "docs").sort_by("id")
    stats = {}
    for path in sorted((run_dir / "stats").glob("*.json")):
        data = json.loads(path.read_text())
        data.pop("seconds")
        stats[path.name] = data
    return docs, stats


def test_sigkill_then_rerun_matches_uninterrupted(tmp_path, spine_data):
    make_inputs(tmp_path, spine_data)
    conf = tmp_path / "job.yaml"
    conf.write_text(
        f"input: {{paths: ['{tmp_path}/in-*.jsonl'], format: jsonl}}\nworkers: 1\n"
        "stages:\n  - {stage: normalize}\n  - {stage: length, min_words: 20}\n"
    )
    killed = tmp_path / "killed"
    proc = run_cli(conf, killed)
    done = killed / "_done"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if done.is_dir() and len(os.listdir(done)) >= 3:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert 3 <= len(os.listdir(done)) < UNITS
    assert run_cli(conf, killed).wait() == 0

    full = tmp_path / "full"
    assert run_cli(conf, full).wait() == 0
    killed_docs, killed_stats = snapshot(killed)
    full_docs, full_stats = snapshot(full)
    assert killed_docs.equals(full_docs)
    assert killed_stats == full_stats
    assert full_stats["read.json"]["docs_in"] == UNITS * 6 * 300
