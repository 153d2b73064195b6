"""Classifier throughput: the `classify` stage vs datatrove's FastTextClassifierFilter, same
documents, same model (the shipped quality.ftz), one process, one run; prints docs/s and the ratio.

Documents: the extraction benchmark's hand-extracted article bodies and State of the Union
chunks (real text, 1-10 KB each). datatrove is a benchmark-only dependency (`pip install datatrove`).

    python bench/classifiers.py --data ../shared/data [--repeat 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from refinery.classifiers import corpora
from refinery.classifiers.fasttext_model import FastTextClassifier
from refinery.pipeline.resources import package_root
from refinery.pipeline.stage import run_map_stage
from refinery.stages.classify import Classify, ClassifyParams

MODEL = package_root() / "models" / "classifiers" / "quality.ftz"


def documents(root: Path) -> list[str]:
    texts = [text for _, text in corpora.article_bodies(root)]
    for _, speech in corpora.nltk_plaintext(root, "state_union"):
        texts.extend(corpora.chunks(speech, 4000))
    return texts


class Clock:
    """Wall and process CPU time of a block (CPU time is steadier on a shared machine)."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def refinery_stage() -> Classify:
    stage = Classify(
        ClassifyParams.model_validate(
            {"classifiers": {"quality": {"path": str(MODEL), "min": {"hq": 0.5}}}, "domains": None, "words": None}
        )
    )
    stage.setup()
    return stage


def run_refinery(stage: Classify, texts: list[str], batch_size: int) -> tuple[Clock, int, np.ndarray]:
    # Input batches are built before timing, as datatrove's Documents are.
    batches = [
        pa.RecordBatch.from_pydict(
            {
                "id": [str(j) for j in range(i, i + batch_size)][: len(texts) - i],
                "text": pa.array(texts[i : i + batch_size], pa.large_string()),
            }
        )
        for i in range(0, len(texts), batch_size)
    ]
    kept: list[pa.RecordBatch] = []
    with Clock() as clock:
        for batch in batches:
            out, _ = run_map_stage(stage, batch)
            kept.append(out)
    return (
        clock,
        sum(b.num_rows for b in kept),
        np.concatenate([b.column("id").to_numpy(zero_copy_only=False) for b in kept]),
    )


def datatrove_filter():
    from datatrove.pipeline.filters import FastTextClassifierFilter

    filt = FastTextClassifierFilter(str(MODEL), keep_labels=[("hq", 0.5)], newline_replacement=" ")
    _ = filt.model  # load outside the timed loop, as the stage's setup() is
    return filt


def run_datatrove(filt, texts: list[str]) -> tuple[Clock, int]:
    from datatrove.data import Document

    docs = [Document(text=t, id=str(i)) for i, t in enumerate(texts)]
    with Clock() as clock:
        kept = sum(1 for _ in filt.run(iter(docs)))
    return clock, kept


def reference_kept(texts: list[str]) -> np.ndarray:
    """Ids the stage must keep: P(hq) >= 0.5 with each text prepared by the per-document Python
    `prepare` (the model's training preprocessing)."""
    model = FastTextClassifier(MODEL)
    hq = model.predict_proba(texts)[:, model.labels.index("hq")]
    return np.array([str(i) for i in np.flatnonzero(hq >= 0.5)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(package_root().parent / "shared" / "data"))
    parser.add_argument("--repeat", type=int, default=3, help="copies of the document set")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, help="alternating timed runs of each; the fastest counts")
    args = parser.parse_args(argv)
    texts = documents(Path(args.data)) * args.repeat
    mb = sum(len(t.encode()) for t in texts) / 1e6
    stage, filt = refinery_stage(), datatrove_filter()
    ours_runs, theirs_runs = [], []
    for _ in range(args.rounds):
        ours_runs.append(run_refinery(stage, texts, args.batch_size))
        theirs_runs.append(run_datatrove(filt, texts))
    ours, ours_kept, kept_ids = ours_runs[0]
    theirs, theirs_kept = theirs_runs[0]
    ours.wall, ours.cpu = min(r[0].wall for r in ours_runs), min(r[0].cpu for r in ours_runs)
    theirs.wall, theirs.cpu = min(r[0].wall for r in theirs_runs), min(r[0].cpu for r in theirs_runs)
    same = np.array_equal(np.sort(kept_ids), np.sort(reference_kept(texts)))
    print(f"documents: {len(texts)} ({mb:.1f} MB)")
    for name, clock, kept in (
        ("refinery classify", ours, ours_kept),
        ("datatrove FastTextClassifierFilter", theirs, theirs_kept),
    ):
        print(
            f"{name:36s} {len(texts) / clock.wall:6.0f} docs/s  {mb / clock.wall:5.2f} MB/s  "
            f"(CPU {clock.cpu:.2f} s)  kept {kept}"
        )
    print(f"refinery keeps exactly the documents of per-document Python preparation: {same}")
    print(f"ratio refinery/datatrove: {theirs.wall / ours.wall:.2f}x wall, {theirs.cpu / ours.cpu:.2f}x CPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
