"""`refinery classifiers train|eval|build`: fastText classifiers from labeled JSONL."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("classifiers", help="train, evaluate and rebuild fastText classifiers")
    sub = parser.add_subparsers(dest="classifiers_command", required=True)

    train = sub.add_parser("train", help="train a supervised model from labeled JSONL")
    train.add_argument("--input", required=True, help="JSONL with text and label fields")
    train.add_argument("--output", required=True, help="model file (.ftz when quantized)")
    train.add_argument("--text-key", default="text")
    train.add_argument("--label-key", default="label")
    train.add_argument("--dim", type=int, default=20, help="multiple of 10")
    train.add_argument("--epoch", type=int, default=20)
    train.add_argument("--lr", type=float, default=0.2)
    train.add_argument("--word-ngrams", type=int, default=2)
    train.add_argument("--min-count", type=int, default=2)
    train.add_argument("--no-quantize", action="store_true")
    train.set_defaults(func=_train)

    evaluate = sub.add_parser("eval", help="accuracy, per-label P/R/F1 and AUC on labeled JSONL")
    evaluate.add_argument("--model", required=True)
    evaluate.add_argument("--input", required=True)
    evaluate.add_argument("--text-key", default="text")
    evaluate.add_argument("--label-key", default="label")
    evaluate.add_argument("--positive", help="label whose probability is ranked for the AUC")
    evaluate.set_defaults(func=_eval)

    from refinery.classifiers import build

    rebuild = sub.add_parser("build", help="rebuild the shipped models from the bundled corpora")
    build.add_arguments(rebuild)
    rebuild.set_defaults(func=build.run)
    return parser


def _train(args) -> int:
    from refinery.classifiers.data import read_labeled
    from refinery.classifiers.fasttext_model import TrainParams, train

    examples, skipped = read_labeled(args.input, args.text_key, args.label_key)
    params = TrainParams(
        dim=args.dim,
        epoch=args.epoch,
        lr=args.lr,
        word_ngrams=args.word_ngrams,
        min_count=args.min_count,
        quantize=not args.no_quantize,
    )
    model = train(examples, args.output, params)
    print(
        json.dumps(
            {"model": str(model.path), "labels": model.labels, "examples": len(examples), "skipped": dict(skipped)}
        )
    )
    return 0


def _eval(args) -> int:
    from refinery.classifiers.build import evaluate
    from refinery.classifiers.data import read_labeled
    from refinery.classifiers.fasttext_model import FastTextClassifier

    examples, skipped = read_labeled(args.input, args.text_key, args.label_key)
    report = evaluate(FastTextClassifier(args.model), examples, args.positive)
    report["skipped"] = dict(skipped)
    print(json.dumps(report, indent=2))
    return 0
