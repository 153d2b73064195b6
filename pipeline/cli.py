"""The `refinery` command line."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from typing import Callable

# Subcommands contributed by other parts of the package: module with `add_parser(subparsers)`.
EXTENSIONS = (
    "refinery.tokenize.cli",
    "refinery.classifiers.cli",
    "refinery.trainer.cli",
    "refinery.trainer.evaluation.cli",
    "refinery.pipeline.service",
)


def _run(args: argparse.Namespace) -> int:
    from refinery.pipeline.config import load_job
    from refinery.pipeline.funnel import format_funnel
    from refinery.pipeline.run import run

    overrides = {"runner": args.runner}
    job = load_job(args.conf, overrides)
    address = args.address or job.config.ray.address or os.environ.get("RAY_ADDRESS")
    out = args.out or job.config.output
    if not out:
        print(f"{args.conf}: output: give --out RUN or `output:` in the config", file=sys.stderr)
        return 2
    options = {"address": address} if (args.runner or job.config.runner) == "ray" else {}
    stats = run(job, out, **options)
    print(format_funnel([s.to_dict() for s in stats]))
    return 0


def _stats(args: argparse.Namespace) -> int:
    from refinery.pipeline.funnel import format_funnel, load_stats
    from refinery.pipeline.rundir import open_existing_run

    run = open_existing_run(args.run)
    if run is None:
        return 2
    stats = load_stats(run)
    print(json.dumps(stats, indent=2) if args.json else format_funnel(stats))
    return 0


def _report(args: argparse.Namespace) -> int:
    """A run's statistics report, or a training's (its --out holds metrics.jsonl)."""
    from refinery.pipeline.funnel import is_partial, load_stats
    from refinery.pipeline.report import write_report
    from refinery.pipeline.rundir import open_existing_run

    if os.path.isfile(os.path.join(args.run, "metrics.jsonl")):  # a training's --out: its loss and evaluations
        from refinery.trainer.evaluation.report import write_report as write_training_report

        print(write_training_report(args.run, args.output))
        return 0
    run = open_existing_run(args.run)
    if run is None:
        return 2
    stats = load_stats(run)
    path = write_report(run, args.output, stats)
    print(f"{path}{' (partial figures: job running or interrupted)' if is_partial(stats) else ''}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="refinery", description="Pretraining-data pipeline for LLMs.")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    run_p = sub.add_parser("run", help="run a job on this machine or a Ray cluster")
    run_p.add_argument("conf")
    run_p.add_argument("--out", help="run directory")
    run_p.add_argument("--runner", choices=("local", "ray", "spark"))
    run_p.add_argument("--address", help="Ray address (default: config, then RAY_ADDRESS, then embedded local Ray)")
    run_p.set_defaults(func=_run)

    stats_p = sub.add_parser("stats", help="print a run's per-stage funnel")
    stats_p.add_argument("run")
    stats_p.add_argument("--json", action="store_true", help="the merged statistics as JSON")
    stats_p.set_defaults(func=_stats)

    report_p = sub.add_parser(
        "report",
        help="write a run's statistics report (or a training's loss and "
        "evaluation report), one self-contained HTML page",
    )
    report_p.add_argument("run")
    report_p.add_argument("-o", "--output", help="output file (default: RUN/stats/report.html)")
    report_p.set_defaults(func=_report)

    for name in EXTENSIONS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name and name.startswith(err.name):
                continue
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from refinery.pipeline.config import ConfigError

    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    command: Callable[[argparse.Namespace], int] = args.func
    try:
        return command(args)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
