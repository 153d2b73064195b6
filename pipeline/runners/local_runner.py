"""The local runner: a process pool over units; every stage of a segment runs in the worker."""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed

import pyarrow as pa

from refinery.pipeline.config import Job
from refinery.pipeline.plan import Plan, Segment, empty_resolution, run_stage_on_chunk, write_chunk
from refinery.pipeline.progress import Progress
from refinery.pipeline.stage import GlobalStage

# Per worker process: the plan of the job being run and its set-up stages per segment,
# so models load once per worker, not once per unit.
_PLANS: dict[str, Plan] = {}
_STAGES: dict[tuple[str, int], list] = {}


def _worker_plan(job: Job, run_dir: str) -> Plan:
    plan = _PLANS.get(run_dir)
    if plan is None or plan.job != job:
        plan = _PLANS[run_dir] = Plan(job, run_dir)
        for key in [k for k in _STAGES if k[0] == run_dir]:
            del _STAGES[key]
    return plan


def _stages(plan: Plan, segment: Segment):
    key = (str(plan.run.root), segment.index)
    if key not in _STAGES:
        stages = plan.map_stages(segment)
        for stage in stages:
            stage.setup()
        _STAGES[key] = stages
    return _STAGES[key]


def process_unit(job: Job, run_dir: str, segment_index: int, unit: int, path: str) -> tuple[int, int]:
    """Read one unit, pass each chunk through the segment's stages, write parts, stats and marker."""
    plan = _worker_plan(job, run_dir)
    segment = plan.segments[segment_index]
    stages = _stages(plan, segment)
    docs = nbytes = 0
    for chunk, batch, read_stats in plan.read_unit(segment, unit, path):
        if read_stats is not None:
            plan.run.write_stats_part(segment.index, unit, chunk, read_stats)
            docs += read_stats.docs_in
            nbytes += read_stats.bytes_in
        for stage in stages:
            batch = run_stage_on_chunk(plan, segment, stage, batch)
        write_chunk(plan, segment, unit, chunk, batch)
    plan.run.mark_done(segment.index, unit, path)
    return docs, nbytes


def _signatures(job: Job, run_dir: str, stage_name: str, path: str) -> pa.Table:
    import pyarrow.parquet as pq

    plan = _worker_plan(job, run_dir)
    stage = next(s for s in plan.stages if s.name == stage_name)
    return pa.Table.from_batches([stage.signatures(b) for b in pq.ParquetFile(path).iter_batches(batch_size=65536)])


class LocalEngine:
    def __init__(self, plan: Plan, workers: int | None = None):
        self.plan = plan
        self.workers = workers or plan.job.config.workers or os.cpu_count() or 1
        self.pool: ProcessPoolExecutor | None = None

    def _pool(self) -> ProcessPoolExecutor:
        if self.pool is None:
            self.pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        return self.pool

    def _map(self, fn, calls: list[tuple]):
        """Results of fn over calls, in completion order; in-process when parallelism cannot help."""
        if self.workers == 1 or len(calls) == 1:
            for args in calls:
                yield fn(*args)
            return
        futures = [self._pool().submit(fn, *args) for args in calls]
        for future in as_completed(futures):
            yield future.result()

    def map_units(self, segment: Segment, pending: list[tuple[int, str]]) -> None:
        progress = Progress(len(pending), f"segment {segment.index}")
        run_dir = str(self.plan.run.root)
        calls = [(self.plan.job, run_dir, segment.index, unit, path) for unit, path in pending]
        for docs, nbytes in self._map(process_unit, calls):
            progress.update(docs, nbytes)
        progress.close()

    def resolve(self, stage: GlobalStage, parts: list[str]) -> pa.Table:
        run_dir = str(self.plan.run.root)
        tables = list(self._map(_signatures, [(self.plan.job, run_dir, stage.name, p) for p in parts]))
        if not tables:
            return empty_resolution(stage)
        return stage.resolve_local(pa.concat_tables(tables))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
