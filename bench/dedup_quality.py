"""Precision/recall of MinHash dedup on a synthetic near-duplicate set built from real prose.

Each source piece (NLTK State of the Union / inaugural, public domain) gets copies with word
deletions, insertions, swaps and appended boilerplate at several strengths, so true Jaccard
(over the same 5-word shingles) spans 0.3-1.0. Found pairs (same cluster) are scored against
pairs with exact Jaccard >= 0.8 and >= 0.7.
    python bench/dedup_quality.py [--sources 150]
"""
from __future__ import annotations

import argparse
import itertools
import random

import pyarrow as pa

from refinery.stages.dedup import deduplicate
from refinery.stages.dedup import text as dtext

from minhash import documents  # noqa: E402 - sibling benchmark module

BOILERPLATE = "click here to subscribe to our newsletter share this page privacy policy terms of use".split()


def mutate(words: list[str], strength: float, rng: random.Random) -> list[str]:
    out = list(words)
    for _ in range(int(len(out) * strength)):
        op = rng.random()
        i = rng.randrange(len(out))
        if op < 0.4:
            del out[i]
        elif op < 0.8:
            out.insert(i, rng.choice(words))
        else:
            j = rng.randrange(len(out))
            out[i], out[j] = out[j], out[i]
    if rng.random() < 0.5:
        out += BOILERPLATE
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sources", type=int, default=150)
    args = ap.parse_args()
    rng = random.Random(0)
    ids, texts, group = [], [], []
    for s, doc in enumerate(documents(args.sources, words=200)[: args.sources]):
        words = doc.split()
        for k, strength in enumerate((0.0, 0.01, 0.03, 0.06, 0.1, 0.2)):
            ids.append(f"s{s:05d}-{k}")
            texts.append(" ".join(mutate(words, strength, rng)) if strength else doc)
            group.append(s)
    sets = [set(dtext.shingles(t, 5)) for t in texts]
    res = deduplicate(pa.table({"id": ids, "text": pa.array(texts, pa.large_string())}), method="minhash")
    cluster = dict(zip(res.column("id").to_pylist(), res.column("minhash_cluster").to_pylist()))
    found, truth = set(), {0.8: set(), 0.7: set()}
    by_group: dict[int, list[int]] = {}
    for i, g in enumerate(group):
        by_group.setdefault(g, []).append(i)
    for i, j in itertools.combinations(range(len(ids)), 2):
        if ids[i] in cluster and cluster.get(ids[i]) == cluster.get(ids[j]):
            found.add((i, j))
    for members in by_group.values():
        for i, j in itertools.combinations(members, 2):
            jac = len(sets[i] & sets[j]) / len(sets[i] | sets[j])
            for t in truth:
                if jac >= t:
                    truth[t].add((i, j))
    print(f"{len(ids)} documents from {args.sources} sources; {len(found)} pairs found")
    for t, pairs in truth.items():
        tp = len(found & pairs)
        print(f"Jaccard >= {t}: {len(pairs)} true pairs, precision {tp / max(len(found), 1):.3f}, recall {tp / max(len(pairs), 1):.3f}")


if __name__ == "__main__":
    main()
