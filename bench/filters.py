"""Rule-filter throughput: our `rules` stage vs datatrove's same filters, on the same documents.

    python bench/filters.py [--docs N]

One process (one core). Documents: the extracted real pages of tests/data/web. Both sides run
Gopher repetition, Gopher quality, C4 quality and FineWeb quality with their default
thresholds on every document (no early exit between filters, so both do the full work); ours
runs as the stage does, one Arrow batch through `process`. Needs datatrove and spaCy.
"""
from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

import pyarrow as pa
from datatrove.data import Document
from datatrove.pipeline.filters import C4QualityFilter, FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter

from refinery.stages.rules import Rules, RulesParams

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "data" / "web" / "extracted.jsonl.gz"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=724)
    args = parser.parse_args()
    pages = [json.loads(line) for line in gzip.open(FIXTURE, "rt")][: args.docs]
    n_bytes = sum(len(p["text"].encode()) for p in pages)
    ours = Rules(RulesParams(c4_badwords=None, internlm2=None))
    peers = [GopherRepetitionFilter(), GopherQualityFilter(), C4QualityFilter(), FineWebQualityFilter()]
    batch = pa.RecordBatch.from_pylist([{"id": p["id"], "text": p["text"], "url": None, "source": ""} for p in pages])
    for peer in peers:  # load spaCy and warm both sides on a few pages
        peer.filter(Document(text=pages[0]["text"], id="w"))
    ours.process(batch.slice(0, 5))

    start = time.process_time()
    ours.process(batch)
    t_ours = time.process_time() - start
    start = time.process_time()
    for page in pages:
        for peer in peers:
            peer.filter(Document(text=page["text"], id=page["id"]))
    t_peer = time.process_time() - start

    print(f"{len(pages)} documents, {n_bytes / 1e6:.1f} MB of text, CPU seconds of one process")
    print("| system | CPU s | docs/s per core | MB/s per core |")
    print("|---|---|---|---|")
    for name, t in (("refinery rules", t_ours), ("datatrove filters", t_peer)):
        print(f"| {name} | {t:.2f} | {len(pages) / t:.0f} | {n_bytes / 1e6 / t:.2f} |")
    print(f"ratio (refinery / datatrove, docs/s): {t_peer / t_ours:.1f}x")


if __name__ == "__main__":
    main()
