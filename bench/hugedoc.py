"""Memory of one huge document, stage by stage: peak RSS over the document's size.

The document is real public-domain prose (the inaugural-address paragraphs of
tests/data/spine/inaugural-a.jsonl, each with a counter so that they differ), joined by blank
lines up to the size asked. Each stage (normalize, rules, dedup's MinHash signatures, tokenize
with the shipped demo tokenizer) gets the document as a one-row batch in a fresh process, so
each peak (VmHWM) is that stage's alone; the figure is the peak above the resident size before
the call, divided by the document's size.

Goal: no stage holds many copies of a document. The read stage's `max_doc_bytes` (default
5 MB) bounds the size any stage sees; a stage's multiple of it is the figure below.

`--job` also runs the whole job (normalize, rules, MinHash dedup, tokenize; local runner, one
worker, so everything runs in the measured process) on a JSONL file holding the document and
three ordinary ones, once with the default cap and once with the cap above the document, and
reports the run's peak RSS.

    python bench/hugedoc.py [--mb 5 50] [--stages normalize rules dedup tokenize] [--job]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("normalize", "rules", "dedup", "tokenize")


def document(size: int) -> str:
    paragraphs = [json.loads(line)["text"] for line in (ROOT / "tests/data/spine/inaugural-a.jsonl").open()]
    out, n, i = [], 0, 0
    while n < size:
        text = f"{paragraphs[i % len(paragraphs)]} ({i})"
        out.append(text)
        n += len(text) + 2
        i += 1
    return "\n\n".join(out)[:size]


def _status(key: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) << 10
    raise KeyError(key)


def measure(stage_name: str, size: int) -> dict:
    """One stage on the one-document batch, in this process."""
    import numpy as np
    import pyarrow as pa

    from refinery.pipeline.execute import tag
    from refinery.pipeline.registry import stage_class
    from refinery.pipeline.stage import run_map_stage

    raw = document(size).encode()
    offsets = pa.py_buffer(np.array([0, len(raw)], dtype=np.int64).tobytes())
    text = pa.LargeStringArray.from_buffers(1, offsets, pa.py_buffer(raw))
    batch = tag(
        pa.RecordBatch.from_arrays(
            [pa.array(["huge"]), text, pa.array([None], pa.string()), pa.array(["bench"])],
            names=["id", "text", "url", "source"],
        ),
        0,
        0,
    )
    cls = stage_class(stage_name)
    params = {"tokenizer": str(ROOT / "models/tokenizer/refinery-demo-8k.model")} if stage_name == "tokenize" else {}
    stage = cls(cls.Params(**params), name=stage_name)
    stage.setup()
    before = _status("VmRSS")
    start = time.perf_counter()
    if stage_name == "dedup":
        stage.signatures(batch)
    else:
        run_map_stage(stage, batch)
    seconds = time.perf_counter() - start
    peak = _status("VmHWM") - before
    return {
        "stage": stage_name,
        "doc_mb": len(raw) / 1e6,
        "peak_mb": round(peak / 1e6),
        "x_doc": round(peak / len(raw), 1),
        "seconds": round(seconds, 1),
    }


JOB = """input: {{paths: [{data}], format: jsonl{cap}}}
workers: 1
stages:
  - {{stage: normalize}}
  - {{stage: rules}}
  - {{stage: dedup, method: minhash}}
  - {{stage: tokenize, tokenizer: {model}}}
"""


def run_job(size: int, work: Path, cap: int | None) -> dict:
    """Peak RSS of the job over the huge document and three ordinary ones (in a fresh process)."""
    work.mkdir(parents=True, exist_ok=True)
    data = work / "input.jsonl"
    if not data.exists():
        paragraphs = [json.loads(line) for line in (ROOT / "tests/data/spine/inaugural-a.jsonl").open()][:3]
        rows = [{"id": "huge", "text": document(size)}] + [{"id": p["id"], "text": p["text"]} for p in paragraphs]
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    job = work / f"job-{cap}.yaml"
    job.write_text(
        JOB.format(
            data=json.dumps(str(data)),
            cap=f", max_doc_bytes: {cap}" if cap else "",
            model=ROOT / "models/tokenizer/refinery-demo-8k.model",
        )
    )
    out = work / f"run-{cap}"
    done = subprocess.run(
        [sys.executable, __file__, "--one", "job", str(job), str(out)], capture_output=True, text=True, check=True
    )
    row = json.loads(done.stdout.strip().splitlines()[-1])
    stats = json.loads((out / "stats" / "read.json").read_text())
    return {**row, "cap": cap or "default", "read_dropped": stats["dropped_by_reason"]}


def measure_job(job: str, out: str) -> dict:
    from refinery.pipeline import runners
    from refinery.pipeline.config import load_job

    start = time.perf_counter()
    runners.run(load_job(job), out, runner="local")
    return {"peak_mb": round(_status("VmHWM") / 1e6), "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, nargs="+", default=[5, 50])
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--job", action="store_true", help="also run the whole job on the document")
    parser.add_argument("--work", type=Path, default=Path("/tmp/refinery-hugedoc"))
    parser.add_argument("--one", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(
            json.dumps(measure_job(*args.one[1:]) if args.one[0] == "job" else measure(args.one[0], int(args.one[1])))
        )
        return
    print(f"{'stage':<10} {'doc MB':>7} {'peak MB':>8} {'x doc':>6} {'s':>6}")
    for mb in args.mb:
        for stage in args.stages:
            done = subprocess.run(
                [sys.executable, __file__, "--one", stage, str(int(mb * 1e6))],
                capture_output=True,
                text=True,
                check=True,
            )
            row = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{row['stage']:<10} {row['doc_mb']:>7.0f} {row['peak_mb']:>8} {row['x_doc']:>6} {row['seconds']:>6}")
    if args.job:
        for mb in args.mb:
            size = int(mb * 1e6)
            for cap in (None, size + 1):
                row = run_job(size, args.work / f"{mb:g}mb", cap)
                print(
                    f"whole job, {mb:g} MB document, cap {row['cap']}: peak {row['peak_mb']} MB, "
                    f"{row['seconds']} s, read dropped {row['read_dropped']}"
                )


if __name__ == "__main__":
    main()
