"""Memory of document-masked attention against the window length: refinery's per-document causal
SDPA against one SDPA call with a dense (B, 1, T, T) document mask (what the trainer did before),
on the same packed windows.

Each (implementation, length) runs in a fresh process: one forward and backward pass of the tiny
preset (`--shape small`: 4 layers, hidden 256, 8 heads, 2 key/value heads) over one window of T
tokens packed with documents of 128 to 2048 tokens; the figures are the process's peak resident
memory, above the model's own, and its growth from 2k to 8k tokens (the goal: at most 1.5x on
the tiny model; activations themselves grow linearly in T, so a larger model grows more).

    python bench/attention.py [--lengths 2048 8192] [--shape tiny|small]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


SHAPES = {
    "tiny": {},
    "small": dict(
        hidden_size=256, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2, intermediate_size=704
    ),
}


def measure(kind: str, length: int, shape: str) -> dict:
    import torch

    from refinery.trainer import model as model_module
    from refinery.trainer.config import preset

    torch.manual_seed(0)
    torch.set_num_threads(1)
    cfg = preset("tiny", vocab_size=4096, max_position_embeddings=8192, **SHAPES[shape])
    model = model_module.InternLM2ForCausalLM(cfg)
    if kind == "dense":
        from attention_reference import dense_document_attention

        model_module.document_attention = dense_document_attention
    rng = random.Random(0)
    positions = []
    while len(positions) < length:
        positions += list(range(rng.randint(128, 2048)))
    position_ids = torch.tensor([positions[:length]])
    ids = torch.randint(0, cfg.vocab_size, (1, length))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    loss = model(ids, position_ids, labels=ids, loss_chunk_tokens=1024)
    loss.backward()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"kind": kind, "length": length, "peak_mib": peak / 1024, "above_model_mib": (peak - before) / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[2048, 8192])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]), args.shape)))
        return
    found = {}
    for kind in ("per-document", "dense"):
        for length in args.lengths:
            out = subprocess.run(
                [sys.executable, __file__, "--one", kind, str(length), "--shape", args.shape],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            found[kind, length] = json.loads(out.splitlines()[-1])
            r = found[kind, length]
            print(
                f"{kind:13s} T={length:6d}: peak RSS {r['peak_mib']:8.0f} MiB, {r['above_model_mib']:8.0f} MiB "
                "above the model"
            )
    lo, hi = min(args.lengths), max(args.lengths)
    for kind in ("per-document", "dense"):
        ratio = found[kind, hi]["peak_mib"] / found[kind, lo]["peak_mib"]
        print(f"{kind}: peak RSS at {hi} / at {lo} = {ratio:.2f}x")
    print(
        f"dense / per-document at {hi}: {found['dense', hi]['peak_mib'] / found['per-document', hi]['peak_mib']:.2f}x"
    )


if __name__ == "__main__":
    main()
