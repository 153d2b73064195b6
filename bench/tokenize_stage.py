"""Tokenize stage throughput (this file is not named `tokenize.py`: scripts in bench/ would import
it as the standard library's `tokenize`) vs raw `SentencePieceProcessor.encode` on the same text, one run.

Text: paragraphs of the bundled public-domain addresses (data/tokenizer/*.zip), repeated to
`--mb` megabytes and cut into batches of `--batch-docs` documents. Both sides use the same
model and the same number of SentencePiece threads; the raw side returns Python lists (its
default), the stage returns Arrow batches with `input_ids` and `n_tokens` added.

    python bench/tokenize_stage.py [--mb 16] [--threads 2] [--model models/tokenizer/refinery-demo-8k.model]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pyarrow as pa
import sentencepiece as spm

from refinery.stages.tokenize_stage import Tokenize, TokenizeParams
from refinery.tokenize.tokenizer import iter_texts

ROOT = Path(__file__).resolve().parents[1]


def corpus(mb: float) -> list[str]:
    paragraphs = []
    for name in ("inaugural.zip", "state_union.zip"):
        for text in iter_texts(str(ROOT / "data" / "tokenizer" / name)):
            paragraphs.extend(p for p in text.split("\n\n") if p.strip())
    out, size, target = [], 0, int(mb * (1 << 20))
    while size < target:
        for p in paragraphs:
            out.append(p)
            size += len(p.encode())
            if size >= target:
                break
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-docs", type=int, default=2000)
    ap.add_argument("--model", default=str(ROOT / "models" / "tokenizer" / "refinery-demo-8k.model"))
    args = ap.parse_args()

    texts = corpus(args.mb)
    chunks = [texts[i : i + args.batch_docs] for i in range(0, len(texts), args.batch_docs)]
    batches = [
        pa.RecordBatch.from_arrays(
            [pa.array([str(i)] * len(c)), pa.array(c, type=pa.large_string())], names=["id", "text"]
        )
        for i, c in enumerate(chunks)
    ]
    sp = spm.SentencePieceProcessor(model_file=args.model)
    stage = Tokenize(TokenizeParams(tokenizer=args.model, threads=args.threads))
    stage.setup()
    sp.encode(chunks[0][:50], num_threads=args.threads)
    stage.process(batches[0].slice(0, 50))

    start = time.perf_counter()
    raw_tokens = 0
    for chunk in chunks:
        raw_tokens += sum(map(len, sp.encode(chunk, add_bos=True, add_eos=True, num_threads=args.threads)))
    raw_s = time.perf_counter() - start

    start = time.perf_counter()
    stage_tokens = 0
    for batch in batches:
        stage_tokens += int(pa.compute.sum(stage.process(batch).batch.column("n_tokens")).as_py())
    stage_s = time.perf_counter() - start

    assert raw_tokens == stage_tokens, (raw_tokens, stage_tokens)
    result = {
        "text_mb": round(sum(len(t.encode()) for t in texts) / (1 << 20), 1),
        "documents": len(texts),
        "tokens": raw_tokens,
        "threads": args.threads,
        "raw_sentencepiece_tokens_per_s": round(raw_tokens / raw_s),
        "tokenize_stage_tokens_per_s": round(stage_tokens / stage_s),
        "ratio_stage_over_raw": round(raw_s / stage_s, 3),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
