"""A run: a job executed into its run directory, which it claims first, by one of the runners."""

from __future__ import annotations

import logging
import os
from typing import Any

import pyarrow.fs as pafs
import yaml

from refinery.pipeline.config import ConfigError, Job
from refinery.pipeline.execute import merge_stats
from refinery.pipeline.plan import Plan
from refinery.pipeline.progress import Progress
from refinery.pipeline.readers import READ
from refinery.pipeline.runners import runner_for
from refinery.pipeline.stage import Stage
from refinery.pipeline.stats import StageFigures, StageStats
from refinery.pipeline.storage import StorageError, file_sizes

log = logging.getLogger("refinery")


def _claim_run_dir(plan: Plan, job: Job) -> None:
    """A run directory holds one job: a rerun with another config is refused, not mixed. The
    first write into the run directory happens here, so a folder that cannot be written (no
    bucket, no permission, a file in the way) is one clear error before any work."""
    run = plan.run
    resolved = yaml.safe_dump({**job.resolved(), "output_columns": plan.output_columns()}, sort_keys=False)
    try:
        if run.local and os.path.isfile(run.base):
            raise ConfigError("--out", run.uri, "is a file, not a run directory")
        if not run.local and run.fs.type_name in ("s3", "gcs"):
            bucket = run.base.split("/", 1)[0]
            if run.fs.get_file_info(bucket).type == pafs.FileType.NotFound:
                raise ConfigError(
                    "--out", run.uri, f"bucket {bucket!r} does not exist (or these credentials cannot see it)"
                )
        if run.exists(run.job):
            previous = yaml.safe_load(run.read_text(run.job))
            current = yaml.safe_load(resolved)
            for data in (previous, current):
                data.pop("runner", None)
                data.get("ray", {}).pop("address", None)
                data.pop("workers", None)
            if previous != current:
                raise ConfigError(run.location(run.job), "(run directory)", "holds a different job; use another --out")
            swept = run.remove_temporaries()
            if swept:
                log.info("removed %d unfinished temporary files of an earlier attempt", swept)
        run.write_text(run.job, resolved)
    except OSError as err:
        raise ConfigError("--out", run.uri, f"cannot write the run directory: {err}") from None


def _write_figures(plan: Plan, stage: Stage, found: StageFigures | None, name: str) -> None:
    """A stage's own figures (dedup's clusters, decontaminate's index) join its statistics as
    one more part, `name` in the run directory."""
    if found is None:
        return
    stats = StageStats(stage=stage.name, kind=stage.kind, extra=found.get("extra", {}))
    stats.histograms.update(found.get("histograms", {}))
    for example in found.get("examples", []):
        members = ", ".join(example.get("members", []))
        stats.examples.setdefault("clusters", []).append(
            {
                "key": str(example["cluster"]),
                "id": str(example.get("kept")),
                "url": None,
                "text": f"cluster of {example.get('size')}: {members}",
            }
        )
    plan.run.write_text(name, stats.to_json())


def open_run(job: Job, out: str) -> Plan:
    """The plan of a job into `out`, its run directory claimed: errors about `out` come here."""
    try:
        plan = Plan(job, out)
    except StorageError as err:
        raise ConfigError("--out", str(out), str(err)) from None
    _claim_run_dir(plan, job)
    return plan


def run(job: Job, out: str | os.PathLike[str], runner: str | None = None, **options: Any) -> list[StageStats]:
    """Run a validated job into `out` (a path or URI); finished units of an earlier attempt are
    skipped. The driver only schedules and merges small summaries: documents, resolutions and
    shards are read and written by the workers."""
    plan = open_run(job, str(out))
    run_dir = plan.run
    for stage in plan.stages:
        _write_figures(plan, stage, stage.prepare(run_dir), run_dir.prepare_stats(stage.name))
    active = runner_for(runner or job.config.runner, plan, **options)
    try:
        for segment in plan.segments:
            opener = segment.opener
            if opener is not None and not run_dir.exists(run_dir.resolved_marker(opener.name)):
                run_dir.clear_resolution(opener.name)
                found = active.resolve(opener, plan.parts(plan.segments[segment.index - 1]))
                _write_figures(plan, opener, found, run_dir.resolve_stats(opener.name))
                run_dir.write_text(run_dir.resolved_marker(opener.name), "")
            units = plan.units(segment)
            done = run_dir.done_units(segment.index)
            pending = [(i, path) for i, path in enumerate(units) if i not in done]
            run_dir.clear_units(segment.index, {unit for unit, _ in pending}, plan.output_dir(segment), segment.last)
            log.info("segment %d: %d units, %d to do", segment.index, len(units), len(pending))
            if pending:
                first = READ if opener is None else opener.name
                paths = {unit: path if segment.index == 0 else run_dir.location(path) for unit, path in pending}
                sizes = file_sizes(list(paths.values()))
                with Progress(run_dir, segment.index, first, paths, {unit: sizes[p] for unit, p in paths.items()}):
                    active.map_units(segment, pending)
        for stage in plan.stages:
            stage.finalize(run_dir)
    finally:
        active.close()
    return merge_stats(plan)
