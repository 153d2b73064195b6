"""`refinery eval TRAIN_OUT --suite SUITE [--watch] [--runner local|ray] [--workers N] [--address ADDR]`."""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("eval", help="evaluate a training run's checkpoints beside it (decoupled)")
    parser.add_argument("train_out", help="the training's --out folder (read-only; results go to TRAIN_OUT/eval/)")
    parser.add_argument("--suite", required=True, help="evaluation suite YAML (conf/eval/*.yaml)")
    parser.add_argument(
        "--watch",
        action="store_true",
        help="follow the run: evaluate each new checkpoint, exit once the training has finished",
    )
    parser.add_argument("--runner", choices=("local", "ray"), default="local")
    parser.add_argument("--workers", type=int, default=1, help="trials at once (local worker processes or Ray tasks)")
    parser.add_argument("--address", help="Ray address (default: embedded local Ray)")
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between looks for new checkpoints")
    parser.add_argument(
        "--idle-timeout", type=float, help="with --watch: exit after this many seconds without a new checkpoint"
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from refinery.trainer.evaluation.suite import load_suite

    suite = load_suite(args.suite)  # a ConfigError is reported by the umbrella CLI
    if args.workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return 2
    from refinery.trainer.evaluation.evaluator import Evaluator

    try:
        evaluator = Evaluator(
            args.train_out,
            suite,
            workers=args.workers,
            runner=args.runner,
            address=args.address,
            watch=args.watch,
            poll_s=args.poll,
            idle_timeout_s=args.idle_timeout,
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    status = evaluator.run()
    print(json.dumps(status))
    return 1 if status["trials_failed"] else 0
