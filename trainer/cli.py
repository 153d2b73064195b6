"""`refinery train CONF [--data SHARDS] --out DIR [--max-steps N] [--resume auto] [--supervise --max-restarts N]`
and `refinery export TRAIN_OUT [--step N] --out DIR [--llama]`.

`--nproc-per-node N` starts N ranks through torchrun (DDP; gloo on CPU, NCCL on GPU);
`--supervise` runs the training as a child process and restarts it from the latest
checkpoint after a failure it can recover from (see `refinery.trainer.supervisor`).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys

from refinery.pipeline.core import ConfigError
from refinery.trainer.config import load_train_config


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("train", help="train an InternLM2 model on token shards")
    parser.add_argument("config", help="training YAML (conf/train/*.yaml)")
    parser.add_argument(
        "--data", help="token shard folder or URI (a manifest.json inside); or data.sources in the config"
    )
    parser.add_argument("--out", required=True, help="output folder: metrics.jsonl, checkpoints/, hf/, logs")
    parser.add_argument("--max-steps", type=int, help="optimizer steps (default: the config's max_steps)")
    parser.add_argument("--resume", choices=["auto"], help="auto: continue from the newest complete checkpoint")
    parser.add_argument("--supervise", action="store_true", help="restart after recoverable failures")
    parser.add_argument("--max-restarts", type=int, default=3, help="with --supervise (default 3)")
    parser.add_argument("--nproc-per-node", type=int, default=1, help="ranks on this machine, via torchrun")
    parser.set_defaults(func=run)
    export = subparsers.add_parser("export", help="write a checkpoint's model as a Hugging Face folder")
    export.add_argument("train_out", help="a training output folder, or a checkpoint folder or URI")
    export.add_argument("--step", type=int, help="the checkpoint's step (default: the newest complete one)")
    export.add_argument("--out", required=True, help="the folder to write")
    export.add_argument("--llama", action="store_true", help="LLaMA layout (convert2llama's mapping), not InternLM2's")
    export.set_defaults(func=run_export)
    return parser


def run_export(args: argparse.Namespace) -> int:
    """One checkpoint's model, gathered from its shards in this process, as an InternLM2 or LLaMA folder."""
    from pathlib import Path

    from refinery.trainer.checkpoint import complete_steps, folder_of, load_model
    from refinery.trainer.hf import export_llama, save_hf

    given = Path(args.train_out)
    root = folder_of(given) if (given / "train.yaml").exists() or (given / "checkpoints").is_dir() else args.train_out
    steps = complete_steps(root)
    step = args.step if args.step is not None else (steps[-1] if steps else None)
    if step not in steps:
        print(
            f"error: {root}: no complete checkpoint" + (f" at step {step}" if step is not None else ""), file=sys.stderr
        )
        return 2
    model = load_model(root, step)
    folder = export_llama(model, args.out) if args.llama else save_hf(model, args.out)
    print(f"step {step} of {root} -> {folder}")
    return 0


def _child_command(args: argparse.Namespace, *, resume: bool) -> list[str]:
    cmd = [args.config, *(["--data", args.data] if args.data else []), "--out", args.out]
    if args.max_steps:
        cmd += ["--max-steps", str(args.max_steps)]
    if resume:
        cmd += ["--resume", "auto"]
    if args.nproc_per_node > 1:
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={args.nproc_per_node}",
            "-m",
            "refinery.pipeline.cli",
            "train",
            *cmd,
        ]
    return [sys.executable, "-m", "refinery.pipeline.cli", "train", *cmd]


def _die_with_launcher() -> None:
    """torchrun starts each rank in a session of its own, so killing the launcher's process group
    would leave the ranks training, and writing checkpoints beside the run that resumes. On Linux
    the kernel kills this rank when its launcher goes."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() == 1:  # the launcher was gone before the request
        os._exit(128 + signal.SIGKILL)


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load_train_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.data and not cfg.data.sources:
        print(f"error: {args.config}: no training data: give --data SHARDS or data.sources", file=sys.stderr)
        return 2
    if args.max_steps is not None and args.max_steps <= 0:
        print("error: --max-steps must be positive", file=sys.stderr)
        return 2
    if args.supervise:
        from refinery.trainer.supervisor import Supervisor

        os.makedirs(args.out, exist_ok=True)
        first = _child_command(args, resume=args.resume == "auto")
        return Supervisor(first, args.out, args.max_restarts, restart_command=_child_command(args, resume=True)).run()
    if args.nproc_per_node > 1 and "LOCAL_RANK" not in os.environ:
        return subprocess.call(_child_command(args, resume=args.resume == "auto"))
    from refinery.trainer.loop import Preempted, train

    if "LOCAL_RANK" in os.environ:
        _die_with_launcher()
    try:
        train(cfg, args.data, args.out, max_steps=args.max_steps, resume=args.resume == "auto")
    except Preempted as exc:
        print(str(exc), flush=True)
        return 128 + signal.SIGTERM
    return 0
