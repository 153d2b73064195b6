"""Long-context selection per language: whole chapters against same-source splices.

Chapters: bench/data/longctx/chapters.jsonl.xz (built by bench/longctx_corpus.py; sources and
licenses in bench/data/longctx/SOURCE.md): whole chapters of at least 32 KB in en, de, es, fr, ja
and zh. Splices, the hard negatives: for each chapter, random paragraphs of the same source, the
same language and the same split (the same book: same vocabulary, no continuity) joined to the
chapter's length. The longctx stage judges every document (annotate mode, its default statistics
and scorer); the coherence threshold is the one that best separates chapters from splices on the
`tune` split (balanced accuracy summed over languages), and the figures printed are on the
held-out `test` split, at that threshold and at the stage's default `min_coherence`.

    python bench/longctx.py [--splices 4] [--window-chars 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import lzma
import random
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from refinery.pipeline.stage import run_map_stage
from refinery.stages.longctx import LongContext, LongCtxParams

DATA = Path(__file__).parent / "data" / "longctx" / "chapters.jsonl.xz"


def load_chapters(path: Path = DATA) -> list[dict]:
    with lzma.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def splice(length: int, pool: list[str], rng: random.Random) -> str:
    """Random paragraphs of `pool` joined by blank lines, cut to `length` characters."""
    out: list[str] = []
    size = 0
    while size < length:
        out.append(rng.choice(pool))
        size += len(out[-1]) + 2
    return "\n\n".join(out)[:length]


def documents(chapters: list[dict], splices: int, seed: int) -> list[dict]:
    """Every chapter and its splices: text, language, split and whether it is a chapter."""
    rng = random.Random(seed)
    pools: dict[tuple, list[str]] = {}
    for c in chapters:
        pools.setdefault((c["lang"], c["source"], c["split"]), []).extend(c["paragraphs"])
    docs = []
    for c in chapters:
        text = "\n\n".join(c["paragraphs"])
        docs.append({"lang": c["lang"], "split": c["split"], "chapter": True, "text": text})
        pool = pools[(c["lang"], c["source"], c["split"])]
        for _ in range(splices):
            docs.append(
                {"lang": c["lang"], "split": c["split"], "chapter": False, "text": splice(len(text), pool, rng)}
            )
    return docs


def judge(docs: list[dict], params: LongCtxParams) -> tuple[np.ndarray, np.ndarray]:
    """Whether each document passes the length and statistics, and its coherence gain (NaN if none)."""
    stage = LongContext(params, annotate_only=True)
    stage.setup()
    batch = pa.RecordBatch.from_pydict(
        {
            "id": [str(i) for i in range(len(docs))],
            "text": pa.array([d["text"] for d in docs], pa.large_string()),
            "lang": [d["lang"] for d in docs],
        }
    )
    out, stats = run_map_stage(stage, batch)
    assert not stats.errors_by_kind, stats.errors_by_kind
    reasons = out.column("longctx_reason").to_pylist()
    gains = np.array([np.nan if g is None else g for g in out.column("coherence_gain").to_pylist()])
    return np.array([r in (None, "incoherent") for r in reasons]), gains


def rates(docs, passed, gains, threshold, split) -> dict[str, tuple[float, float, int, int]]:
    """Per language: (chapters selected, splices selected, chapters, splices) on `split`."""
    selected = passed & (gains >= threshold)
    out = {}
    for lang in sorted({d["lang"] for d in docs}):
        rows = [i for i, d in enumerate(docs) if d["lang"] == lang and d["split"] == split]
        ch = [i for i in rows if docs[i]["chapter"]]
        sp = [i for i in rows if not docs[i]["chapter"]]
        out[lang] = (selected[ch].mean(), selected[sp].mean(), len(ch), len(sp))
    return out


def tune_threshold(docs, passed, gains) -> float:
    """The threshold with the best balanced accuracy summed over languages on the tune split: the
    middle of the interval of thresholds that reach it."""
    candidates = np.unique(gains[np.isfinite(gains)])
    scores = [sum(c - s for c, s, _, _ in rates(docs, passed, gains, t, "tune").values()) for t in candidates]
    best = np.flatnonzero(np.isclose(scores, max(scores)))
    first = best[0]
    last = first
    while last + 1 in best:
        last += 1
    # every threshold in (candidates[first - 1], candidates[last]] selects the same documents
    low = candidates[first - 1] if first else candidates[first] - 1e-3
    return float((low + candidates[last]) / 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--splices", type=int, default=4, help="splices per chapter")
    parser.add_argument("--window-chars", type=int, default=LongCtxParams().window_chars)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    docs = documents(load_chapters(Path(args.data)), args.splices, args.seed)
    # min_chars 0: every chapter is at least 32 KB of UTF-8, which in Chinese is about 11,000 characters.
    params = LongCtxParams(min_chars=0, min_coherence=float("-inf"), window_chars=args.window_chars)
    start = time.perf_counter()
    passed, gains = judge(docs, params)
    seconds = time.perf_counter() - start
    mb = sum(len(d["text"].encode()) for d in docs) / 1e6
    print(f"{len(docs)} documents ({mb:.1f} MB) in {seconds:.1f} s; window_chars {args.window_chars}")
    print(f"documents without a coherence score: {int(np.isnan(gains).sum())}")
    tuned = tune_threshold(docs, passed, gains)
    default = LongCtxParams().min_coherence
    for name, threshold in (("tuned on the tune split", tuned), ("stage default", default)):
        print(f"\nmin_coherence {threshold:.4f} ({name}); selected on the held-out test split:")
        print(f"{'lang':<6}{'chapters':>14}{'splices':>14}")
        for lang, (c, s, nc, ns) in rates(docs, passed, gains, threshold, "test").items():
            print(f"{lang:<6}{c:>9.0%} ({nc:>2}){s:>9.0%} ({ns:>2})")
    for split in ("tune", "test"):
        for label, is_chapter in (("chapters", True), ("splices", False)):
            g = gains[[d["split"] == split and d["chapter"] == is_chapter for d in docs]]
            print(f"{split} {label}: gain median {np.median(g):.4f}, min {g.min():.4f}, max {g.max():.4f}")
    statistics_failed = [d["lang"] for d, ok in zip(docs, passed) if d["chapter"] and not ok]
    print(f"chapters failing the statistics: {len(statistics_failed)} {sorted(set(statistics_failed))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
