"""Precision/recall of MinHash dedup on a near-duplicate set built from real prose.

Each source piece (~200 words of NLTK State of the Union / inaugural addresses, public domain)
gets edited copies (word deletions, insertions, swaps at several strengths, half with appended
boilerplate), so exact Jaccard over the same 5-word shingles spans the whole 0-1 range.

Dedup acts on (dropped document, kept document of its cluster) pairs, so those are the found
pairs: precision at t = share of found pairs whose exact Jaccard is >= t. A true pair is any
two documents with exact Jaccard >= t; it is caught when dedup did not keep both of them
(recall at t = share of true pairs caught). Both at t = 0.8 and t = 0.7.
    cd bench && python dedup_quality.py [--sources 300]
"""

from __future__ import annotations

import argparse
import itertools
import random
import time

import numpy as np
import pyarrow as pa
from minhash import documents  # noqa: E402 - sibling benchmark module

from refinery.stages.dedup import Dedup, DedupParams, deduplicate
from refinery.stages.dedup import text as dtext

BOILERPLATE = "click here to subscribe to our newsletter share this page privacy policy terms of use".split()
STRENGTHS = (0.0, 0.005, 0.01, 0.015, 0.02, 0.03, 0.045, 0.07, 0.12)
THRESHOLDS = (0.8, 0.7)


def mutate(words: list[str], strength: float, rng: random.Random) -> list[str]:
    out = list(words)
    for _ in range(round(len(out) * strength)):
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


def near_duplicates(sources: int, seed: int = 0) -> tuple[list[str], list[str], list[int]]:
    rng = random.Random(seed)
    ids, texts, group = [], [], []
    for s, doc in enumerate(documents(sources, words=200)[:sources]):
        words = doc.split()
        for k, strength in enumerate(STRENGTHS):
            ids.append(f"s{s:05d}-{k}")
            texts.append(" ".join(mutate(words, strength, rng)) if k else doc)
            group.append(s)
    return ids, texts, group


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / max(len(a) + len(b) - inter, 1)


def evaluate(ids, sets, group, resolution: pa.Table) -> dict:
    index = {d: i for i, d in enumerate(ids)}
    dropped = resolution.filter(resolution.column("reason").is_valid())
    found = [
        (index[d], index[k])
        for d, k in zip(dropped.column("id").to_pylist(), dropped.column("minhash_cluster").to_pylist())
    ]
    found_j = np.array([jaccard(sets[a], sets[b]) for a, b in found])
    removed = np.zeros(len(ids), dtype=bool)
    removed[[a for a, _ in found]] = True
    members: dict[int, list[int]] = {}
    for i, g in enumerate(group):
        members.setdefault(g, []).append(i)
    pairs = [(i, j, jaccard(sets[i], sets[j])) for m in members.values() for i, j in itertools.combinations(m, 2)]
    out = {"found": len(found)}
    for t in THRESHOLDS:
        true = [(i, j) for i, j, jac in pairs if jac >= t]
        caught = sum(removed[i] or removed[j] for i, j in true)
        out[t] = (len(true), float((found_j >= t).mean()) if len(found) else 1.0, caught / max(len(true), 1))
    out["spread"] = np.histogram([jac for _, _, jac in pairs], bins=[0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.01])[0].tolist()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sources", type=int, default=300)
    args = ap.parse_args()
    ids, texts, group = near_duplicates(args.sources)
    table = pa.table({"id": ids, "text": pa.array(texts, pa.large_string())})
    hashes, offsets = dtext.shingle_hashes(table.column("text"), 5)
    sets = [np.unique(hashes[offsets[i] : offsets[i + 1]]) for i in range(len(ids))]
    print(
        f"{len(ids)} documents from {args.sources} sources, {len(STRENGTHS)} variants each; 5-gram shingles, 128 "
        "permutations"
    )
    print("| threshold | verify | bands x rows | dropped | P @0.8 | R @0.8 | P @0.7 | R @0.7 | seconds |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for threshold, verify in ((0.7, False), (0.7, True), (0.8, False), (0.8, True)):
        stage = Dedup(DedupParams(threshold=threshold, verify=verify))
        start = time.perf_counter()
        res = deduplicate(table, method="minhash", threshold=threshold, verify=verify)
        sec = time.perf_counter() - start
        r = evaluate(ids, sets, group, res)
        bands, rows = stage.banding
        scores = " | ".join(f"{r[t][1]:.3f} | {r[t][2]:.3f}" for t in THRESHOLDS)
        print(f"| {threshold} | {verify} | {bands} x {rows} | {r['found']} | {scores} | {sec:.1f} |")
    print(
        f"true pairs: {r[0.8][0]} at >= 0.8, {r[0.7][0]} at >= 0.7; same-source pairs per Jaccard bin "
        f"[0,.3,.5,.6,.7,.8,.9,1]: {r['spread']}"
    )


if __name__ == "__main__":
    main()
