"""Runners: the same plan executed in one process pool, on Ray Data, or on Spark."""
from __future__ import annotations

import logging
from pathlib import Path

import yaml

from refinery.pipeline.config import ConfigError, Job
from refinery.pipeline.plan import Plan, merge_stats
from refinery.pipeline.progress import Progress
from refinery.pipeline.readers import READ
from refinery.pipeline.rundir import atomic_write_parquet, atomic_write_text
from refinery.pipeline.stats import StageStats

log = logging.getLogger("refinery")


def _engine(name: str, plan: Plan, **options):
    if name == "local":
        from refinery.pipeline.runners.local_runner import LocalEngine

        return LocalEngine(plan, **options)
    if name == "ray":
        from refinery.pipeline.runners.ray_runner import RayEngine

        return RayEngine(plan, **options)
    if name == "spark":
        from refinery.pipeline.runners.spark_runner import SparkEngine

        return SparkEngine(plan, **options)
    raise ValueError(f"unknown runner {name!r}")


def _claim_run_dir(plan: Plan, job: Job) -> None:
    """A run directory holds one job: a rerun with another config is refused, not mixed."""
    resolved = yaml.safe_dump({**job.resolved(), "output_columns": plan.output_columns()}, sort_keys=False)
    if plan.run.job.exists():
        previous = yaml.safe_load(plan.run.job.read_text())
        current = yaml.safe_load(resolved)
        for data in (previous, current):
            data.pop("runner", None)
            data.get("ray", {}).pop("address", None)
            data.pop("workers", None)
        if previous != current:
            raise ConfigError(str(plan.run.job), "(run directory)", "holds a different job; use another --out")
    atomic_write_text(plan.run.job, resolved)


def _write_resolution_stats(plan: Plan, stage, resolution) -> None:
    """A global stage's own figures (e.g. dedup clusters) join its statistics as one more part."""
    describe = getattr(stage, "resolution_stats", None)
    if describe is None:
        return
    found = describe(resolution)
    stats = StageStats(stage=stage.name, kind=stage.kind, extra=found.get("extra", {}))
    stats.histograms.update(found.get("histograms", {}))
    for example in found.get("examples", []):
        members = ", ".join(example.get("members", []))
        stats.examples.setdefault("clusters", []).append(
            {"key": str(example["cluster"]), "id": str(example.get("kept")), "url": None,
             "text": f"cluster of {example.get('size')}: {members}"})
    atomic_write_text(plan.run.root / "_parts" / stage.name / "resolve.json", stats.to_json())


def run(job: Job, out: str | Path, runner: str | None = None, **options) -> list[StageStats]:
    """Run a validated job into `out`; finished units of an earlier attempt are skipped."""
    plan = Plan(job, out)
    _claim_run_dir(plan, job)
    engine = _engine(runner or job.config.runner, plan, **options)
    try:
        for segment in plan.segments:
            if segment.opener is not None and not plan.run.resolution(segment.opener.name).exists():
                previous = plan.segments[segment.index - 1]
                resolution = engine.resolve(segment.opener, plan.parts(previous))
                _write_resolution_stats(plan, segment.opener, resolution)
                atomic_write_parquet(plan.run.resolution(segment.opener.name), resolution)
            units = plan.units(segment)
            pending = [(i, path) for i, path in enumerate(units) if not plan.run.is_done(segment.index, i)]
            for unit, _ in pending:
                plan.run.clear_unit(segment.index, unit, plan.output_dir(segment))
            log.info("segment %d: %d units, %d to do", segment.index, len(units), len(pending))
            if pending:
                first = READ if segment.opener is None else segment.opener.name
                with Progress(plan.run, segment.index, first, len(pending)):
                    engine.map_units(segment, pending)
        for stage in plan.stages:
            stage.finalize(plan.run)
    finally:
        engine.close()
    return merge_stats(plan)
