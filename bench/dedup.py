"""End-to-end MinHash dedup: `refinery run` (local runner) vs datatrove's MinHash pipeline.

The same Parquet input for both: N documents of 8-25 real sentences drawn at random from
public-domain prose (NLTK State of the Union and inaugural addresses) and the 181 gold article
texts of the Scrapinghub article-extraction benchmark (MIT), with a share of documents
replaced by edited copies of earlier ones (0-5 % word edits, some with boilerplate added).
Both use 5-word shingles and Jaccard 0.7 banding: refinery 128 permutations in 14 bands x 9
rows; datatrove 14 buckets x 9 hashes (126; it takes buckets x hashes, not a permutation
count), its default 64-bit xxhash, LocalPipelineExecutor with 2 workers
(MinhashDedupSignature -> Buckets -> Cluster -> Filter, the documented sequence).
Each system runs in its own process tree; wall time and peak resident memory (sum over the
tree, sampled from /proc every 0.2 s) are measured from outside.
    python bench/dedup.py --docs 200000 [--work /tmp/dedup-bench] [--only refinery|datatrove]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data beside the repo
BOILERPLATE = "click here to subscribe to our newsletter share this page privacy policy terms of use".split()
FILES = 8


def sentences() -> list[str]:
    out: list[str] = []
    texts = []
    for corpus in ("state_union", "inaugural"):
        with zipfile.ZipFile(SHARED / "nltk_corpora" / f"{corpus}.zip") as z:
            texts += [
                io.TextIOWrapper(z.open(n), encoding="latin-1").read()
                for n in sorted(z.namelist())
                if n.endswith(".txt")
            ]
    gold = json.loads((SHARED / "article_extraction_benchmark" / "ground-truth.json").read_text())
    texts += [v["articleBody"] for _, v in sorted(gold.items())]
    for t in texts:
        out += [s.strip() for s in re.split(r"(?<=[.!?])\s+", " ".join(t.split())) if len(s.split()) >= 4]
    return out


def edit(text: str, rng: random.Random) -> str:
    words = text.split()
    for _ in range(round(len(words) * rng.choice((0.0, 0.01, 0.02, 0.05)))):
        i = rng.randrange(len(words))
        op = rng.random()
        if op < 0.4:
            del words[i]
        elif op < 0.8:
            words.insert(i, rng.choice(words))
        else:
            j = rng.randrange(len(words))
            words[i], words[j] = words[j], words[i]
    if rng.random() < 0.3:
        words += BOILERPLATE
    return " ".join(words)


def build(n: int, dup_rate: float, folder: Path, seed: int = 0) -> int:
    """Write `n` documents as FILES Parquet files; returns how many are injected copies."""
    rng = random.Random(seed)
    pool = sentences()
    docs: list[str] = []
    copies = 0
    for i in range(n):
        if i > 100 and rng.random() < dup_rate:
            docs.append(edit(docs[rng.randrange(i)], rng))
            copies += 1
        else:
            docs.append(" ".join(rng.choice(pool) for _ in range(rng.randint(8, 25))))
    folder.mkdir(parents=True, exist_ok=True)
    per = -(-n // FILES)
    for f in range(FILES):
        part = docs[f * per : (f + 1) * per]
        ids = [f"doc-{f * per + k:09d}" for k in range(len(part))]
        pq.write_table(
            pa.table({"id": ids, "text": pa.array(part, pa.large_string())}), folder / f"part-{f:03d}.parquet"
        )
    return copies


def tree_rss(root: int) -> int:
    """Resident bytes of `root` and all its descendants."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    tree, frontier = {root}, [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parents.items() if pp == p and c not in tree]
        tree.update(kids)
        frontier += kids
    total = 0
    for pid in tree:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            pass
    return total


def measured(cmd: list[str], log: Path) -> tuple[float, int]:
    """(wall seconds, peak resident bytes of the process tree) of one command."""
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        peak = [0]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], tree_rss(proc.pid))
                done.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        code = proc.wait()
        done.set()
        sampler.join()
    if code:
        raise SystemExit(f"{cmd} failed ({code}); see {log}")
    return time.perf_counter() - start, peak[0]


def run_refinery(work: Path) -> tuple[float, int, int]:
    conf = work / "refinery.yaml"
    conf.write_text(
        f"input: {{paths: ['{work / 'input'}/*.parquet'], format: parquet}}\n"
        "stages:\n  - {stage: dedup, method: minhash, ngram: 5, num_perm: 128, threshold: 0.7}\n"
        "runner: local\nworkers: 2\n"
    )
    out = work / "refinery-run"
    shutil.rmtree(out, ignore_errors=True)
    sec, rss = measured(["refinery", "run", str(conf), "--out", str(out), "--runner", "local"], work / "refinery.log")
    kept = sum(pq.ParquetFile(p).metadata.num_rows for p in (out / "docs").rglob("*.parquet"))
    return sec, rss, kept


def datatrove_child(work: Path) -> None:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import ParquetWriter
    from datatrove_compat import minhash_signature

    out = work / "datatrove-run"
    config = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=9)
    reader = lambda: ParquetReader(str(work / "input"), text_key="text", id_key="id")  # noqa: E731
    steps = [
        (
            [reader(), minhash_signature(MinhashDedupSignature(output_folder=str(out / "signatures"), config=config))],
            FILES,
        ),
        (
            [
                MinhashDedupBuckets(
                    input_folder=str(out / "signatures"), output_folder=str(out / "buckets"), config=config
                )
            ],
            config.num_buckets,
        ),
        (
            [
                MinhashDedupCluster(
                    input_folder=str(out / "buckets"), output_folder=str(out / "remove_ids"), config=config
                )
            ],
            1,
        ),
        ([reader(), MinhashDedupFilter(input_folder=str(out / "remove_ids")), ParquetWriter(str(out / "docs"))], FILES),
    ]
    for i, (pipeline, tasks) in enumerate(steps):
        LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=2, logging_dir=str(out / f"logs-{i}")).run()


def run_datatrove(work: Path) -> tuple[float, int, int]:
    out = work / "datatrove-run"
    shutil.rmtree(out, ignore_errors=True)
    sec, rss = measured([sys.executable, __file__, "--datatrove-child", "--work", str(work)], work / "datatrove.log")
    kept = sum(pq.ParquetFile(p).metadata.num_rows for p in (out / "docs").rglob("*.parquet"))
    return sec, rss, kept


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=200_000)
    ap.add_argument("--dup-rate", type=float, default=0.15)
    ap.add_argument("--work", type=Path, default=Path("/tmp/dedup-bench"))
    ap.add_argument("--only", choices=("refinery", "datatrove"))
    ap.add_argument("--datatrove-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.datatrove_child:
        datatrove_child(args.work)
        return
    shutil.rmtree(args.work / "input", ignore_errors=True)
    start = time.perf_counter()
    copies = build(args.docs, args.dup_rate, args.work / "input")
    mb = sum(p.stat().st_size for p in (args.work / "input").glob("*.parquet")) / 1e6
    print(
        f"{args.docs} documents ({copies} injected edited copies), {FILES} Parquet files, {mb:.0f} MB, built in "
        f"{time.perf_counter() - start:.0f} s"
    )
    results = {}
    for name, fn in (("refinery", run_refinery), ("datatrove", run_datatrove)):
        if args.only in (None, name):
            sec, rss, kept = fn(args.work)
            results[name] = sec
            print(
                f"{name:10s} {sec:8.1f} s  peak RSS {rss / 2**20:7.0f} MiB  kept {kept}  removed {args.docs - kept}",
                flush=True,
            )
    if len(results) == 2:
        print(f"refinery / datatrove speed = {results['datatrove'] / results['refinery']:.2f}x")


if __name__ == "__main__":
    main()
