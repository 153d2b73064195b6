"""Training throughput of our InternLM2 against `transformers.LlamaForCausalLM` of the same shape.

Both models run the same loop (bf16 autocast on CUDA, float32 on CPU; our loss; AdamW step)
on the same token batches, alternating short rounds so that a busy machine slows both alike;
the script prints tokens/s of each (best round, the least disturbed, and the median round),
tokens per CPU-second (with --threads 1 the least sensitive to other load on a shared
machine) and the ratios ours/peer. It also prints the model TFLOP/s
(`refinery.trainer.flops`: PaLM accounting, 6 x non-embedding parameters + 12 x layers x hidden x
sequence per token) and, on a GPU in the table of peaks, the model FLOPs utilisation.

    python bench/trainer.py                                   # tiny shape on CPU
    python bench/trainer.py --device cuda --preset 1.8B --seq-len 4096 --batch 2 --compile --peer none
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext

import torch

from refinery.trainer.config import preset
from refinery.trainer.flops import flops_per_token, peak_flops, peak_memory_gib
from refinery.trainer.hf import llama_config_dict
from refinery.trainer.model import InternLM2ForCausalLM, causal_lm_loss


def build(name: str, cfg, device):
    if name == "ours":
        model = InternLM2ForCausalLM(cfg)
        forward = model
    else:
        import transformers

        raw = llama_config_dict(cfg, torch.float32)
        raw.pop("architectures"), raw.pop("model_type"), raw.pop("torch_dtype")
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**raw, attn_implementation="sdpa"))

        def forward(ids):
            return model(ids, use_cache=False).logits

    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    return model, forward, optimizer


def run_steps(forward, model, optimizer, batches, device, autocast) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) for one optimizer step per batch."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start, cpu = time.perf_counter(), time.process_time()
    for ids in batches:
        with autocast:
            logits = forward(ids[:, :-1])
        loss = causal_lm_loss(logits, ids[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--vocab-size", type=int, default=8000, help="tiny only: the demo tokenizer's size")
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10, help="optimizer steps per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--peer", choices=["llama", "none"], default="llama")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    overrides = {"vocab_size": args.vocab_size} if args.preset == "tiny" else {}
    cfg = preset(args.preset, **overrides)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    gen = torch.Generator().manual_seed(0)
    batches = [
        torch.randint(0, cfg.vocab_size, (args.batch, args.seq_len + 1), generator=gen).to(device)
        for _ in range(args.steps)
    ]
    tokens = args.steps * args.batch * args.seq_len
    names = ["ours"] + (["llama"] if args.peer == "llama" else [])
    runners = {}
    for name in names:
        torch.manual_seed(0)
        model, forward, optimizer = build(name, cfg, device)
        if args.compile:
            forward = torch.compile(forward)
        run_steps(forward, model, optimizer, batches[:2], device, autocast)  # warm-up (and compile)
        runners[name] = (forward, model, optimizer)
    times = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names:
            forward, model, optimizer = runners[name]
            times[name].append(run_steps(forward, model, optimizer, batches, device, autocast))
    print(
        f"shape {args.preset} ({cfg.num_params() / 1e6:.1f}M params) seq {args.seq_len} batch {args.batch} "
        f"on {device.type} ({torch.get_num_threads()} threads), {args.rounds} rounds x {args.steps} steps"
    )
    wall = {name: [w for w, _ in t] for name, t in times.items()}
    cpu = {name: [c for _, c in t] for name, t in times.items()}
    rate = {name: tokens / min(t) for name, t in wall.items()}
    median = {name: tokens / statistics.median(t) for name, t in wall.items()}
    per_cpu = {name: tokens / min(t) for name, t in cpu.items()}
    for name in names:
        print(
            f"  {name:6s} wall: best {rate[name]:10.0f} tokens/s, median {median[name]:10.0f}; "
            f"per CPU-second: best {per_cpu[name]:10.0f}"
        )
    if "llama" in rate:
        print(
            f"  ratio ours/llama: wall best {rate['ours'] / rate['llama']:.3f}, wall median "
            f"{median['ours'] / median['llama']:.3f}, CPU-time best {per_cpu['ours'] / per_cpu['llama']:.3f}"
        )
    achieved = flops_per_token(cfg, args.seq_len) * rate["ours"]
    peak = peak_flops(device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"  {where}: {achieved / 1e12:.3g} TFLOP/s"
        + (f", MFU {achieved / peak:.1%}" if peak else "")
        + f"; peak memory {peak_memory_gib(device):.2f} GiB"
    )


if __name__ == "__main__":
    main()
