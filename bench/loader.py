"""TokenDataset vs MosaicML streaming and litdata: tokens/s, time to first batch, time to resume.

Tokens: the bundled public-domain addresses (data/tokenizer/*.zip) encoded with the demo
tokenizer (BOS/EOS per document), repeated to `--tokens`. Each library writes them with its own
writer in its recommended layout for LM pretraining:
  - refinery: `write_shards` (one row per document), packed into windows by the loader;
  - MosaicML streaming: `MDSWriter`, one sample per pre-packed `seq_len + 1` window (ndarray:int32);
  - litdata: `optimize` with `TokensLoader` (one token stream), read as `seq_len + 1` blocks.
Each is read with shuffling on, the same `seq_len`, batch size and worker count, for one epoch,
in `--rounds` alternating rounds; the best and the median of each are reported (the machine
may be shared).
Time to first batch: building the dataset and loader and getting the first batch. Time to resume:
from a state saved halfway through the epoch, a fresh dataset and loader to the next batch.

    python bench/loader.py [--tokens 16000000] [--seq-len 2048] [--batch-size 8] [--workers 0] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import types
from pathlib import Path
from statistics import median

import numpy as np
import pyarrow as pa
import torch

from refinery.loaders import TokenDataset, TokenLoader
from refinery.tokenize.shards import write_shards
from refinery.tokenize.tokenizer import Tokenizer, iter_texts

# mosaicml-streaming imports its torchvision datasets when the package loads; none is used here
# and torchvision may be absent (CPU-only torch), so that subpackage is left out.
sys.modules.setdefault("streaming.vision", types.ModuleType("streaming.vision"))

ROOT = Path(__file__).resolve().parents[1]
DOCS: list[np.ndarray] = []


def make_docs(target_tokens: int) -> list[np.ndarray]:
    tok = Tokenizer(ROOT / "models" / "tokenizer" / "refinery-demo-8k.model")
    texts = []
    for name in ("inaugural.zip", "state_union.zip"):
        for text in iter_texts(str(ROOT / "data" / "tokenizer" / name)):
            texts.extend(p for p in text.split("\n\n") if p.strip())
    base = tok.encode(texts, add_bos=True, add_eos=True)
    docs, total = [], 0
    while total < target_tokens:
        for ids in base:
            docs.append(ids)
            total += len(ids)
            if total >= target_tokens:
                break
    return docs


def write_ours(docs, folder: Path) -> None:
    tok = Tokenizer(ROOT / "models" / "tokenizer" / "refinery-demo-8k.model")
    from refinery.tokenize.tokenizer import token_lists

    step = 4096
    batches = (
        pa.RecordBatch.from_arrays(
            [token_lists(docs[i : i + step]), pa.array([str(j) for j in range(i, i + len(docs[i : i + step]))])],
            names=["input_ids", "id"],
        )
        for i in range(0, len(docs), step)
    )
    write_shards(batches, folder, tok.info(add_bos=True, add_eos=True))


def write_mosaic(docs, folder: Path, seq_len: int) -> None:
    from streaming import MDSWriter

    stream = np.concatenate(docs)
    n = (len(stream) - 1) // seq_len
    with MDSWriter(out=str(folder), columns={"tokens": "ndarray:int32"}, size_limit=64 << 20) as out:
        for g in range(n):
            out.write({"tokens": stream[g * seq_len : g * seq_len + seq_len + 1]})


def _litdata_item(index: int):
    for ids in DOCS[index::64]:
        yield torch.from_numpy(ids)


def write_litdata(docs, folder: Path) -> None:
    from litdata import optimize
    from litdata.streaming.item_loader import TokensLoader

    DOCS[:] = docs
    optimize(
        fn=_litdata_item,
        inputs=list(range(64)),
        output_dir=str(folder),
        chunk_bytes="64MB",
        item_loader=TokensLoader(),
        num_workers=1,
        start_method="fork",
        verbose=False,
    )


def ours(folder, seq_len, batch, workers):
    return TokenLoader(TokenDataset(folder, seq_len, seed=0, shuffle=True), batch_size=batch, num_workers=workers)


def mosaic(folder, seq_len, batch, workers):
    from streaming import StreamingDataLoader, StreamingDataset
    from streaming.base.util import clean_stale_shared_memory

    clean_stale_shared_memory()
    ds = StreamingDataset(local=str(folder), shuffle=True, shuffle_seed=0, batch_size=batch)
    return StreamingDataLoader(ds, batch_size=batch, num_workers=workers)


def litdata(folder, seq_len, batch, workers):
    from litdata import StreamingDataLoader, StreamingDataset
    from litdata.streaming.item_loader import TokensLoader

    ds = StreamingDataset(input_dir=str(folder), item_loader=TokensLoader(block_size=seq_len + 1), shuffle=True, seed=0)
    return StreamingDataLoader(ds, batch_size=batch, num_workers=workers)


def batch_tokens(batch, seq_len: int) -> int:
    first = (
        batch["input_ids"]
        if isinstance(batch, dict) and "input_ids" in batch
        else (batch["tokens"] if isinstance(batch, dict) else batch)
    )
    return first.shape[0] * seq_len


def measure(name, make, folder, seq_len, batch, workers) -> dict:
    cpu = time.process_time()
    start = time.perf_counter()
    loader = make(folder, seq_len, batch, workers)
    it = iter(loader)
    tokens = batch_tokens(next(it), seq_len)
    first = time.perf_counter() - start
    batches = 1
    state = None
    start = time.perf_counter()
    for b in it:
        tokens += batch_tokens(b, seq_len)
        batches += 1
        if state is None and batches == 200:
            state = loader.state_dict()
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu
    del it, loader
    start = time.perf_counter()
    resumed = make(folder, seq_len, batch, workers)
    resumed.load_state_dict(state)
    next(iter(resumed))
    resume = time.perf_counter() - start
    del resumed
    return {
        "loader": name,
        "batches": batches,
        "tokens_per_s": round(tokens / (seconds + first)),
        # Tokens per second of this process's CPU time (all the work when workers = 0).
        "tokens_per_cpu_s": round(tokens / cpu),
        "first_batch_s": round(first, 3),
        "resume_s": round(resume, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=16_000_000)
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=3, help="loaders alternate; best and median of each are reported")
    ap.add_argument("--only", nargs="*", default=["refinery", "mosaicml-streaming", "litdata"])
    args = ap.parse_args()

    docs = make_docs(args.tokens)
    root = Path(tempfile.mkdtemp(prefix="loader-bench-"))
    try:
        folders = {"refinery": root / "ours", "mosaicml-streaming": root / "mds", "litdata": root / "litdata"}
        writers = {
            "refinery": lambda: write_ours(docs, folders["refinery"]),
            "mosaicml-streaming": lambda: write_mosaic(docs, folders["mosaicml-streaming"], args.seq_len),
            "litdata": lambda: write_litdata(docs, folders["litdata"]),
        }
        makers = {"refinery": ours, "mosaicml-streaming": mosaic, "litdata": litdata}
        written = {}
        for name in args.only:
            start = time.perf_counter()
            writers[name]()
            written[name] = round(time.perf_counter() - start, 2)
        rows: dict[str, list[dict]] = {name: [] for name in args.only}
        for _ in range(args.rounds):
            for name in args.only:
                row = measure(name, makers[name], folders[name], args.seq_len, args.batch_size, args.workers)
                print(json.dumps(row), flush=True)
                rows[name].append(row)
        keys = (("tokens_per_s", max), ("tokens_per_cpu_s", max), ("first_batch_s", min), ("resume_s", min))
        summary = {
            kind: {
                name: rows[name][0]
                | {key: (pick if kind == "best" else median)(r[key] for r in rows[name]) for key, pick in keys}
                | {"write_s": written[name]}
                for name in args.only
            }
            for kind in ("best", "median")
        }
        for kind, results in summary.items():
            print(f"{kind} of {args.rounds} rounds:")
            for row in results.values():
                print(json.dumps(row))
            if "refinery" in results:
                ours_row = results["refinery"]
                for name, r in results.items():
                    if name != "refinery":
                        print(
                            f"{kind}: refinery / {name}: {ours_row['tokens_per_s'] / r['tokens_per_s']:.2f}x tokens/s, "
                            f"{ours_row['tokens_per_cpu_s'] / r['tokens_per_cpu_s']:.2f}x tokens per CPU second"
                        )
        print(
            json.dumps(
                {
                    "tokens": int(sum(map(len, docs))),
                    "seq_len": args.seq_len,
                    "batch_size": args.batch_size,
                    "workers": args.workers,
                }
            )
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
