"""Extraction quality: our `extract` stage vs `trafilatura.extract` with default settings.

    python bench/extraction.py [SHARED_DATA]

Word-level precision/recall/F1 (bags of words) against the hand-made ground truth of
article_extraction_benchmark, and snippet hit rates on trafilatura's evaluation pages
("with" snippets found = recall, "without" snippets absent = precision).
"""

from __future__ import annotations

import gzip
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import trafilatura

from refinery.pipeline.schema import RAW_SCHEMA
from refinery.stages.extract import Extract, ExtractParams

WORD = re.compile(r"\w+")


def prf(pred: str, gold: str) -> tuple[float, float, float]:
    p, g = Counter(WORD.findall(pred.lower())), Counter(WORD.findall(gold.lower()))
    hit = sum((p & g).values())
    precision = hit / max(1, sum(p.values()))
    recall = hit / max(1, sum(g.values()))
    return precision, recall, 2 * precision * recall / max(precision + recall, 1e-9)


def ours_extract(stage: Extract, body: bytes) -> str:
    batch = pa.RecordBatch.from_pylist(
        [{"id": "x", "text": "", "url": None, "source": "", "html": body, "content_type": "text/html"}],
        schema=RAW_SCHEMA,
    )
    return stage.process(batch).batch.column("text")[0].as_py()


def main(shared: Path) -> None:
    stage = Extract(ExtractParams())
    stage.setup()
    systems = {
        "refinery extract": lambda b: ours_extract(stage, b),
        "trafilatura.extract (defaults)": lambda b: trafilatura.extract(b) or "",
    }
    truth = json.loads((shared / "article_extraction_benchmark" / "ground-truth.json").read_text())
    aeb = [
        (
            gzip.decompress((shared / "article_extraction_benchmark" / "html" / f"{k}.html.gz").read_bytes()),
            v["articleBody"],
        )
        for k, v in sorted(truth.items())
    ]
    evaldata = json.loads((shared / "trafilatura_eval" / "evaldata.json").read_text())
    tev = [
        (gzip.decompress((shared / "trafilatura_eval" / "html" / f"{v['file']}.gz").read_bytes()), v)
        for _, v in sorted(evaldata.items())
        if (shared / "trafilatura_eval" / "html" / f"{v['file']}.gz").is_file()
    ]
    print(f"article_extraction_benchmark: {len(aeb)} pages; trafilatura_eval: {len(tev)} pages")
    print("| system | AEB precision | AEB recall | AEB F1 | eval 'with' found | eval 'without' absent | seconds |")
    print("|---|---|---|---|---|---|---|")
    for name, fn in systems.items():
        start = time.perf_counter()
        scores = [prf(fn(body), gold) for body, gold in aeb]
        found = total_with = absent = total_without = 0
        for body, v in tev:
            text = fn(body)
            found += sum(s in text for s in v.get("with", []))
            total_with += len(v.get("with", []))
            absent += sum(s not in text for s in v.get("without", []))
            total_without += len(v.get("without", []))
        n = len(scores)
        p, r, f = (sum(s[i] for s in scores) / n for i in range(3))
        print(
            f"| {name} | {p:.3f} | {r:.3f} | {f:.3f} | {found / total_with:.3f} | {absent / total_without:.3f} "
            f"| {time.perf_counter() - start:.0f} |"
        )
    stage.worker.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "data")
