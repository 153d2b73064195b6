"""Long-context coherence: does the perplexity-coherence score separate real long documents from
concatenations of paragraphs taken from unrelated documents? Prints the ROC AUC (goal >= 0.9).

Real: held-out State of the Union addresses (not seen by the shipped n-gram LM) and windows of
consecutive chapters of Genesis (KJV and World English Bible). Shuffled: for each real document,
as many paragraphs (units of about 500 characters, cut at line ends) as it has, each drawn from
a different document of another source (the other real documents and the extraction
benchmark's news and blog articles).

    python bench/longctx.py --data ../shared/data [--segment-chars 1000] [--scorer ngram]
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np

from refinery.classifiers import corpora
from refinery.classifiers.build import is_test
from refinery.classifiers.coherence import coherence, load_scorer
from refinery.classifiers.metrics import roc_auc
from refinery.pipeline.resources import package_root

UNIT_CHARS = 500


def real_documents(root: Path, window_chars: int) -> list[tuple[str, list[str]]]:
    """(doc id, paragraph units) of real long documents."""
    docs = []
    for doc_id, text in corpora.nltk_plaintext(root, "state_union"):
        if is_test(doc_id) and len(text) >= window_chars // 2:
            docs.append((doc_id, corpora.chunks(text, UNIT_CHARS, by_lines=True)))
    for doc_id, text in corpora.nltk_plaintext(root, "genesis"):
        if doc_id.endswith(("english-kjv", "english-web")):
            units = corpora.chunks(text, UNIT_CHARS, by_lines=True)
            per_window = max(2, window_chars // UNIT_CHARS)
            for w in range(0, len(units) - per_window + 1, per_window):
                docs.append((f"{doc_id}#{w}", units[w : w + per_window]))
    return docs


def shuffled_documents(real: list[tuple[str, list[str]]], root: Path, seed: int) -> list[tuple[str, list[str]]]:
    rng = random.Random(seed)
    articles = [
        (doc_id, corpora.chunks(text, UNIT_CHARS, by_lines=True)) for doc_id, text in corpora.article_bodies(root)
    ]
    pool = real + articles
    out = []
    for doc_id, units in real:
        source = doc_id.split("/")[0]
        others = [i for i, (other, _) in enumerate(pool) if other.split("/")[0] != source]
        picks = rng.sample(others, min(len(units), len(others)))
        out.append((f"shuffled:{doc_id}", [rng.choice(pool[i][1]) for i in picks]))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(package_root().parent / "shared" / "data"))
    parser.add_argument("--scorer", default="ngram")
    parser.add_argument("--model", default=str(package_root() / "models" / "classifiers" / "coherence-ngram.npz"))
    parser.add_argument("--tokenizer", help="sentencepiece model (internlm2 scorer)")
    parser.add_argument("--segment-chars", type=int, default=1000)
    parser.add_argument("--max-pairs", type=int, default=32)
    parser.add_argument("--window-chars", type=int, default=32_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    options = {"tokenizer": args.tokenizer} if args.scorer == "internlm2" else {}
    scorer = load_scorer(args.scorer, args.model, **options)
    real = real_documents(Path(args.data), args.window_chars)
    fake = shuffled_documents(real, Path(args.data), args.seed)
    scores, labels = [], []
    start = time.perf_counter()
    chars = 0
    for label, docs in ((True, real), (False, fake)):
        for _, paragraphs in docs:
            text = "\n\n".join(paragraphs)
            chars += len(text)
            result = coherence(text, scorer, args.segment_chars, args.max_pairs)
            scores.append(result.gain if result else float("-inf"))
            labels.append(label)
    seconds = time.perf_counter() - start
    scores_a, labels_a = np.array(scores), np.array(labels)
    print(
        f"documents: {labels_a.sum()} real, {(~labels_a).sum()} shuffled; mean length {chars / len(scores):.0f} chars"
    )
    print(f"scorer {args.scorer}, segment_chars {args.segment_chars}, max_pairs {args.max_pairs}")
    print(f"gain real: median {np.median(scores_a[labels_a]):.4f} min {scores_a[labels_a].min():.4f}")
    print(f"gain shuffled: median {np.median(scores_a[~labels_a]):.4f} max {scores_a[~labels_a].max():.4f}")
    print(
        f"AUC {roc_auc(scores_a, labels_a):.4f}; {len(scores) / seconds:.1f} docs/s, {chars / seconds / 1e6:.2f} MB/s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
