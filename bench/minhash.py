"""Signatures per second: refinery's batch MinHash vs datasketch and rensa, same documents.

Documents are real English prose (NLTK State of the Union and inaugural addresses, public
domain) cut into ~300-word pieces; every library gets the same 5-word shingles and 128
permutations. datasketch and rensa take the shingle list per document (their API);
refinery takes the Arrow text column and shingles it itself, included in its time.
    python bench/minhash.py [--docs 2000]
"""
from __future__ import annotations

import argparse
import io
import time
import zipfile

import pyarrow as pa

from refinery.stages.dedup import Dedup, DedupParams
from refinery.stages.dedup import text as dtext

CORPORA = "/work/shared/data/nltk_corpora/{}.zip"


def documents(n: int, words: int = 300) -> list[str]:
    """Real prose in `words`-word pieces, repeated to reach `n` documents."""
    pieces: list[str] = []
    for corpus in ("state_union", "inaugural"):
        with zipfile.ZipFile(CORPORA.format(corpus)) as z:
            for name in sorted(z.namelist()):
                if name.endswith(".txt"):
                    toks = io.TextIOWrapper(z.open(name), encoding="latin-1").read().split()
                    pieces += [" ".join(toks[i : i + words]) for i in range(0, len(toks) - words, words)]
    return [pieces[i % len(pieces)] for i in range(n)]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=2000)
    args = ap.parse_args()
    docs = documents(args.docs)
    shingles = [dtext.shingles(d, 5) for d in docs]
    table = pa.table({"id": [str(i) for i in range(len(docs))], "text": pa.array(docs, pa.large_string())})
    stage = Dedup(DedupParams(num_perm=128))

    def ours():
        for batch in table.to_batches(1024):
            stage.minhashes(batch)

    def datasketch_run():
        from datasketch import MinHash

        for sh in shingles:
            MinHash(num_perm=128, hashfunc=dtext.shingle_hash).update_batch(sh)

    def rensa_run():
        from rensa import RMinHash

        for sh in shingles:
            RMinHash(num_perm=128, seed=1).update(sh)

    results = {"refinery": timed(ours), "datasketch": timed(datasketch_run), "rensa": timed(rensa_run)}
    print(f"{len(docs)} documents, {sum(map(len, shingles)) / len(docs):.0f} shingles/doc, 128 permutations")
    for name, sec in results.items():
        print(f"{name:11s} {len(docs) / sec:10.0f} signatures/s")
    print(f"refinery / datasketch = {results['datasketch'] / results['refinery']:.2f}x")
    print(f"refinery / rensa      = {results['rensa'] / results['refinery']:.2f}x")


if __name__ == "__main__":
    main()
