"""Classifier throughput: the `classify` stage vs datatrove's FastTextClassifierFilter, same
documents, same model (the shipped quality.ftz), one process, one run; prints docs/s and the ratio.

Documents: the extraction benchmark's hand-extracted article bodies and State of the Union
chunks (real text, 1-10 KB each). datatrove is a benchmark-only dependency (`pip install datatrove`).

    python bench/classifiers.py --data ../shared/data [--repeat 3]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import pyarrow as pa

from refinery.classifiers import corpora
from refinery.classifiers.paths import REPO_ROOT
from refinery.pipeline.stage import run_map_stage
from refinery.stages.classify import Classify, ClassifyParams

MODEL = REPO_ROOT / "models" / "classifiers" / "quality.ftz"


def documents(root: Path) -> list[str]:
    texts = [text for _, text in corpora.article_bodies(root)]
    for _, speech in corpora.nltk_plaintext(root, "state_union"):
        texts.extend(corpora.chunks(speech, 4000))
    return texts


def run_refinery(texts: list[str], batch_size: int) -> tuple[float, int]:
    stage = Classify(ClassifyParams.model_validate({"classifiers": {"quality": {"path": str(MODEL), "min": {"hq": 0.5}}}, "domains": None, "words": None}))
    stage.setup()
    kept = 0
    start = time.perf_counter()
    for i in range(0, len(texts), batch_size):
        chunk = texts[i : i + batch_size]
        batch = pa.RecordBatch.from_pydict({"id": [str(j) for j in range(len(chunk))], "text": pa.array(chunk, pa.large_string())})
        out, _ = run_map_stage(stage, batch)
        kept += out.num_rows
    return time.perf_counter() - start, kept


def run_datatrove(texts: list[str]) -> tuple[float, int]:
    from datatrove.data import Document
    from datatrove.pipeline.filters import FastTextClassifierFilter

    filt = FastTextClassifierFilter(str(MODEL), keep_labels=[("hq", 0.5)], newline_replacement=" ")
    docs = [Document(text=t, id=str(i)) for i, t in enumerate(texts)]
    filt.model  # load outside the timed loop, as the stage's setup() is
    start = time.perf_counter()
    kept = sum(1 for _ in filt.run(iter(docs)))
    return time.perf_counter() - start, kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(REPO_ROOT.parent / "shared" / "data"))
    parser.add_argument("--repeat", type=int, default=3, help="copies of the document set")
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args(argv)
    texts = documents(Path(args.data)) * args.repeat
    mb = sum(len(t.encode()) for t in texts) / 1e6
    ours, ours_kept = run_refinery(texts, args.batch_size)
    theirs, theirs_kept = run_datatrove(texts)
    print(f"documents: {len(texts)} ({mb:.1f} MB)")
    print(f"refinery classify:              {len(texts) / ours:8.0f} docs/s  {mb / ours:6.2f} MB/s  kept {ours_kept}")
    print(f"datatrove FastTextClassifierFilter: {len(texts) / theirs:8.0f} docs/s  {mb / theirs:6.2f} MB/s  kept {theirs_kept}")
    print(f"ratio refinery/datatrove: {theirs / ours:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
