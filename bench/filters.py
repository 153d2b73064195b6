"""Rule-filter throughput: our `rules` stage against datatrove's same filters and against our own
tokenize stage, on the same documents.

    python bench/filters.py [--docs N] [--repeat R]

One process (one core), CPU seconds, the best of R runs. Documents: the extracted real pages of
tests/data/web. Three comparisons:
  - the rules stage with its default families against the tokenize stage with one SentencePiece
    encoding thread (the shipped demo model), in MB per stage-second (goal: rules ≥ 1.5× tokenize);
  - the same with C4's bad-word rule on (off by default; the one rule still judged per document);
  - Gopher repetition, Gopher quality, C4 quality and FineWeb quality with their default
    thresholds, ours against datatrove's filters (spaCy word tokenizer), in documents per second.
    Both do the full work on every document (no early exit between filters). Needs datatrove and spaCy.
Each stage runs as it does in a job: one Arrow batch through `process`, after one warm-up batch
(which also loads the compiled kernels).
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

import pyarrow as pa
from datatrove.data import Document
from datatrove.pipeline.filters import (
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
)

from refinery.stages.rules import Rules, RulesParams
from refinery.stages.tokenize_stage import Tokenize, TokenizeParams

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "web" / "extracted.jsonl.gz"
TOKENIZER = ROOT / "models" / "tokenizer" / "refinery-demo-8k.model"


def cpu_seconds(run, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        run()
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=724)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    pages = [json.loads(line) for line in gzip.open(FIXTURE, "rt")][: args.docs]
    mb = sum(len(p["text"].encode()) for p in pages) / 1e6
    batch = pa.RecordBatch.from_pylist([{"id": p["id"], "text": p["text"], "url": None, "source": ""} for p in pages])
    four = dict(c4_badwords=None, internlm2=None)
    stages = {
        "refinery rules (defaults)": Rules(RulesParams()),
        "refinery rules (defaults + c4_badwords)": Rules(RulesParams(c4_badwords={})),
        "refinery rules (Gopher, C4, FineWeb)": Rules(RulesParams(**four)),
        "refinery tokenize (1 thread)": Tokenize(TokenizeParams(tokenizer=str(TOKENIZER), threads=1)),
    }
    peers = [GopherRepetitionFilter(), GopherQualityFilter(), C4QualityFilter(), FineWebQualityFilter()]
    for stage in stages.values():
        stage.setup()
        stage.process(batch.slice(0, 5))
    for peer in peers:  # load spaCy
        peer.filter(Document(text=pages[0]["text"], id="w"))

    seconds = {name: cpu_seconds(lambda s=stage: s.process(batch), args.repeat) for name, stage in stages.items()}
    seconds["datatrove filters (Gopher, C4, FineWeb)"] = cpu_seconds(
        lambda: [peer.filter(Document(text=p["text"], id=p["id"])) for p in pages for peer in peers], 1
    )

    print(f"{len(pages)} documents, {mb:.1f} MB of text, CPU seconds of one process (best of {args.repeat})")
    print("| system | CPU s | docs/s per core | MB/s per core |")
    print("|---|---:|---:|---:|")
    for name, t in seconds.items():
        print(f"| {name} | {t:.3f} | {len(pages) / t:,.0f} | {mb / t:.2f} |")
    tokenize = seconds["refinery tokenize (1 thread)"]
    print(
        f"rules / tokenize, MB per stage-second: {tokenize / seconds['refinery rules (defaults)']:.2f}x "
        f"(with c4_badwords {tokenize / seconds['refinery rules (defaults + c4_badwords)']:.2f}x; goal >= 1.5x)"
    )
    print(
        f"refinery / datatrove, same four families, docs/s: "
        f"{seconds['datatrove filters (Gopher, C4, FineWeb)'] / seconds['refinery rules (Gopher, C4, FineWeb)']:.1f}x"
    )


if __name__ == "__main__":
    main()
