"""`refinery tokenizer train|info`: build a SentencePiece model from a YAML config or flags,
and print what a model holds (the fields a shard manifest records)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import yaml
from pydantic import ValidationError

from refinery.tokenize.tokenizer import Tokenizer, TrainConfig, train_tokenizer


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register `tokenizer` and its subcommands on an argparse subparsers object."""
    parser = subparsers.add_parser("tokenizer", help="train or inspect SentencePiece tokenizers")
    commands = parser.add_subparsers(dest="tokenizer_command", required=True)

    train = commands.add_parser("train", help="train a SentencePiece BPE model (InternLM2 settings)")
    train.add_argument("--config", help="YAML with TrainConfig keys; paths relative to its folder")
    train.add_argument(
        "--input", dest="inputs", action="append", help="training file (.txt/.jsonl/.parquet/.zip); repeatable"
    )
    train.add_argument("--output", help="where to write the .model file")
    train.add_argument("--vocab-size", type=int)
    train.add_argument("--model-type", choices=["bpe", "unigram"])
    train.add_argument("--threads", type=int)
    train.set_defaults(func=_train)

    info = commands.add_parser("info", help="print a model's vocabulary size, special ids and sha256")
    info.add_argument("model")
    info.set_defaults(func=_info)
    return parser


def load_train_config(args: argparse.Namespace) -> TrainConfig:
    data: dict = {}
    if args.config:
        path = Path(args.config)
        data = yaml.safe_load(path.read_text()) or {}
        base = path.parent
        data["inputs"] = [os.path.normpath(base / p) for p in data.get("inputs", [])]
        if "output" in data:
            data["output"] = os.path.normpath(base / data["output"])
    overrides = {
        "inputs": args.inputs,
        "output": args.output,
        "vocab_size": args.vocab_size,
        "model_type": args.model_type,
        "threads": args.threads,
    }
    data.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.model_validate(data)


def _train(args: argparse.Namespace) -> int:
    try:
        config = load_train_config(args)
    except (OSError, yaml.YAMLError, ValidationError) as err:
        print(f"refinery tokenizer train: {err}", file=sys.stderr)
        return 2
    try:
        path = train_tokenizer(config)
    except FileNotFoundError as err:
        print(f"refinery tokenizer train: {err}", file=sys.stderr)
        return 2
    print(json.dumps(Tokenizer(path).info(add_bos=False, add_eos=False) | {"path": str(path)}, indent=2))
    return 0


def _info(args: argparse.Namespace) -> int:
    try:
        tok = Tokenizer(args.model)
    except (OSError, RuntimeError) as err:
        print(f"refinery tokenizer info: {err}", file=sys.stderr)
        return 2
    print(json.dumps(tok.info(add_bos=False, add_eos=False) | {"path": str(tok.path)}, indent=2))
    return 0
