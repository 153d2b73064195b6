"""Engine pass-through: JSONL in, Parquet out, ours vs datatrove's LocalPipelineExecutor.

Both read the same JSONL files and write the same documents to Parquet on one core
(our local runner with workers=1; datatrove with tasks=1, workers=1), in one process run,
and the ratio of documents per second is printed.

    python bench/engine.py --gb 1.0
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "nltk_corpora"


def paragraphs() -> list[str]:
    out = []
    for archive in ("inaugural.zip", "state_union.zip"):
        with zipfile.ZipFile(SHARED / archive) as zf:
            for name in sorted(n for n in zf.namelist() if n.endswith(".txt")):
                text = zf.read(name).decode("latin-1")
                out.extend(p.strip() for p in text.split("\n\n") if len(p.strip()) > 40)
    return out


def build_input(folder: Path, total_bytes: int, files: int = 8) -> int:
    """Write `files` JSONL files of about `total_bytes` together; documents are 1-4 joined paragraphs."""
    paras = paragraphs()
    per_file = total_bytes // files
    docs = 0
    for f in range(files):
        written = 0
        with open(folder / f"part-{f:02d}.jsonl", "w") as fh:
            i = f
            while written < per_file:
                k = 1 + i % 4
                text = "\n\n".join(paras[(i + j) % len(paras)] for j in range(k))
                line = json.dumps({"id": f"{f}-{i}", "text": text, "url": f"https://example.org/{f}/{i}"}) + "\n"
                fh.write(line)
                written += len(line)
                docs += 1
                i += 7
    return docs


def run_ours(src: Path, out: Path) -> float:
    from refinery.pipeline import runners
    from refinery.pipeline.config import validate

    job = validate(
        {"input": {"paths": [str(src / "*.jsonl")], "format": "jsonl"}, "stages": [], "runner": "local", "workers": 1}
    )
    start = time.perf_counter()
    stats = runners.run(job, out, runner="local", workers=1)
    elapsed = time.perf_counter() - start
    assert stats[-1].docs_kept == stats[0].docs_kept
    return elapsed


def run_datatrove(src: Path, out: Path) -> float:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import ParquetWriter

    executor = LocalPipelineExecutor(
        pipeline=[JsonlReader(str(src), glob_pattern="*.jsonl"), ParquetWriter(str(out / "docs"))],
        tasks=1,
        workers=1,
        logging_dir=str(out / "logs"),
    )
    start = time.perf_counter()
    executor.run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0, help="input size in GB")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="refinery-bench-"))
    src = work / "input"
    src.mkdir(parents=True, exist_ok=True)
    docs = build_input(src, int(args.gb * 1e9))
    size = sum(p.stat().st_size for p in src.glob("*.jsonl"))
    print(f"input: {docs:,} documents, {size / 1e9:.2f} GB JSONL in {len(list(src.glob('*.jsonl')))} files")
    ours = run_ours(src, work / "ours")
    theirs = run_datatrove(src, work / "datatrove")
    print(
        f"refinery (local runner, 1 worker): {ours:8.1f} s  {docs / ours:10,.0f} docs/s  {size / ours / 1e6:7.1f} MB/s"
    )
    print(
        f"datatrove (LocalPipelineExecutor, 1 task): {theirs:8.1f} s  {docs / theirs:10,.0f} docs/s  "
        f"{size / theirs / 1e6:7.1f} MB/s"
    )
    print(f"ratio (datatrove time / refinery time, per core): {theirs / ours:.2f}x")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
