"""Signatures per second: refinery's batch MinHash vs datasketch and rensa, same documents.

Documents are real English prose (NLTK State of the Union and inaugural addresses, public
domain) cut into ~300-word pieces; every library gets 5-word shingles and 128 permutations.
refinery takes the Arrow text column and shingles it itself, included in its time.
datasketch (its default SHA-1 hash) and rensa take a list of shingle strings per document;
they are timed twice: on shingles built beforehand (the library alone) and from text, i.e.
plus the per-document Python shingling (lower, split, join) a pipeline would have to run.
"Given shingles" for refinery is its signature kernel alone on the shingle hashes of the text.
    python bench/minhash.py [--docs 2000]
"""

from __future__ import annotations

import argparse
import io
import re
import time
import zipfile
from pathlib import Path

import pyarrow as pa

from refinery.stages.dedup import Dedup, DedupParams, minhash
from refinery.stages.dedup import text as dtext

CORPORA = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "nltk_corpora" / "{}.zip")


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


def python_shingles(doc: str, n: int = 5) -> list[str]:
    words = re.findall(r"\w+", doc.lower())
    return [" ".join(words[i : i + n]) for i in range(max(len(words) - n + 1, 1))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=2000)
    args = ap.parse_args()
    docs = documents(args.docs)
    table = pa.table({"id": [str(i) for i in range(len(docs))], "text": pa.array(docs, pa.large_string())})
    stage = Dedup(DedupParams(num_perm=128))
    shingles: list[list[str]] = []
    encoded: list[list[bytes]] = []

    def ours():
        for batch in table.to_batches(1024):
            stage.minhashes(batch)

    hashes, offsets = dtext.shingle_hashes(table.column("text"), 5)
    minhash.signatures(hashes[:10], offsets[:2].clip(max=10), 128, 1)  # compiled (or loaded from cache) first

    def ours_given():
        minhash.signatures(hashes, offsets, 128, 1)

    def shingling():
        shingles[:] = [python_shingles(d) for d in docs]
        encoded[:] = [[s.encode("utf-8") for s in sh] for sh in shingles]

    def datasketch_run():
        from datasketch import MinHash

        for sh in encoded:
            MinHash(num_perm=128).update_batch(sh)

    def rensa_run():
        from rensa import RMinHash

        for sh in shingles:
            RMinHash(num_perm=128, seed=1).update(sh)

    results = {"refinery": timed(ours)}
    given = {"refinery": timed(ours_given)}
    prep = timed(shingling)
    results["datasketch"] = timed(datasketch_run)
    results["rensa"] = timed(rensa_run)
    per_doc = int(dtext.shingle_hashes(table.column("text"), 5)[1][-1]) / len(docs)
    print(f"{len(docs)} documents, {per_doc:.0f} shingles/doc, 128 permutations")
    print(f"Python shingling for the peers: {len(docs) / prep:.0f} documents/s")
    print(f"{'library':11s} {'given shingles':>15s} {'from text':>10s}   (signatures/s)")
    for name, sec in results.items():
        from_text = sec if name == "refinery" else sec + prep
        print(f"{name:11s} {len(docs) / given.get(name, sec):15.0f} {len(docs) / from_text:10.0f}")
    for peer in ("datasketch", "rensa"):
        print(
            f"refinery / {peer:10s} = {results[peer] / given['refinery']:.2f}x given shingles, "
            f"{(results[peer] + prep) / results['refinery']:.2f}x from text"
        )


if __name__ == "__main__":
    main()
