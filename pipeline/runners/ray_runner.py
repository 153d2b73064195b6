"""The Ray runner: Ray Data `map_batches` over pyarrow blocks; segments with models run in actor pools.

Units are processed in waves; when a wave's dataset has been fully consumed, its units are
marked done, so a killed run redoes at most one wave. Each block keeps its unit/chunk tags,
so parts and partial statistics get the same names as on the local runner.
"""

from __future__ import annotations

import logging
import os
import zlib
from typing import TYPE_CHECKING, Callable, Iterator, cast

import pyarrow as pa
import pyarrow.compute as pc

from refinery.pipeline.cluster import connect
from refinery.pipeline.execute import (
    UNIT,
    chunk_id,
    empty_resolution,
    read_unit,
    ready_stages,
    run_stage_on_chunk,
    segment_stages,
    signatures_of_part,
    split_chunks,
    write_chunk,
    write_resolution,
)
from refinery.pipeline.plan import Plan, Segment
from refinery.pipeline.stage import GlobalStage
from refinery.pipeline.stats import StageFigures

if TYPE_CHECKING:
    from ray.data import Dataset

# A block function as `map_batches` and `map_groups` take it: Ray's annotations allow one
# argument, the block; the functions here take the plan and segment too, from `fn_args`.
BlockFn = Callable[[pa.Table], pa.Table]


def _block_fn(fn: Callable[..., pa.Table | Iterator[pa.Table]]) -> BlockFn:
    return cast(BlockFn, fn)


def _read_units(table: pa.Table, plan: Plan, segment: Segment) -> Iterator[pa.Table]:
    """Reads the units of a block of (unit, path) rows, one output block per chunk."""
    for unit, path in zip(table.column("unit").to_pylist(), table.column("path").to_pylist()):
        for chunk, batch, stats in read_unit(plan, segment, unit, path):
            if stats is not None:
                plan.run.write_stats_part(segment.index, unit, chunk, stats)
            if batch.num_rows:
                yield pa.Table.from_batches([batch])


class SegmentChain:
    """A segment's map stages over blocks. Run as an actor-pool class when a stage holds a model,
    so each actor loads the models once and keeps them for every block it is given."""

    def __init__(self, plan: Plan, segment: Segment):
        self.plan, self.segment = plan, segment
        self.stages = ready_stages(plan, segment)

    def __call__(self, table: pa.Table) -> pa.Table:
        kept: list[pa.RecordBatch] = []
        for batch in split_chunks(table):
            for stage in self.stages:
                batch = run_stage_on_chunk(self.plan, self.segment, stage, batch)
            if batch.num_rows:
                kept.append(batch)
        return pa.Table.from_batches(kept) if kept else table.slice(0, 0)


def _write_parts(table: pa.Table, plan: Plan, segment: Segment) -> pa.Table:
    """Writes each chunk of a block as its Parquet part; returns one (unit, chunk, docs) row per part."""
    rows: dict[str, list[int]] = {"unit": [], "chunk": [], "docs": []}
    for batch in split_chunks(table):
        unit, chunk = chunk_id(batch)
        rows["unit"].append(unit)
        rows["chunk"].append(chunk)
        rows["docs"].append(write_chunk(plan, segment, unit, chunk, batch))
    return pa.table(rows, schema=pa.schema([("unit", pa.int64()), ("chunk", pa.int64()), ("docs", pa.int64())]))


class RayRunner:
    def __init__(self, plan: Plan, address: str | None = None, wave_units: int | None = None):
        import ray

        self.plan = plan
        self.started_here = connect(address, plan.job.config.workers or os.cpu_count())
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.verbose_stats_logs = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        self.parallelism = max(1, int(ray.cluster_resources().get("CPU", 1)))  # type: ignore[no-untyped-call]
        self.actors = plan.job.config.ray.actors or self.parallelism
        self.wave_units = wave_units or max(8, 4 * self.parallelism)

    def _dataset(self, segment: Segment, units: list[tuple[int, str]]) -> Dataset:
        import ray
        import ray.data

        items = [{"unit": u, "path": p} for u, p in units]
        ds: Dataset = ray.data.from_items(items, override_num_blocks=len(items))
        ds = ds.map_batches(_block_fn(_read_units), fn_args=(self.plan, segment), batch_size=1, batch_format="pyarrow")
        if any(stage.uses_model for stage in segment_stages(self.plan, segment)):
            pool = ray.data.ActorPoolStrategy(min_size=1, max_size=self.actors)
            ds = ds.map_batches(
                SegmentChain,
                fn_constructor_args=(self.plan, segment),
                batch_size=None,
                batch_format="pyarrow",
                compute=pool,
            )
        else:
            ds = ds.map_batches(
                _block_fn(_chain_task), fn_args=(self.plan, segment), batch_size=None, batch_format="pyarrow"
            )
        return ds.map_batches(
            _block_fn(_write_parts), fn_args=(self.plan, segment), batch_size=None, batch_format="pyarrow"
        )

    def map_units(self, segment: Segment, pending: list[tuple[int, str]]) -> None:
        for start in range(0, len(pending), self.wave_units):
            wave = pending[start : start + self.wave_units]
            self._dataset(segment, wave).sum("docs")
            for unit, path in wave:
                self.plan.run.mark_done(segment.index, unit, path)

    def resolve(self, stage: GlobalStage, parts: list[str]) -> StageFigures | None:
        """Signatures per part on the workers, the stage's distributed resolve, then a join with
        the (id, unit) pairs and one task per unit writing that unit's share: the driver sees
        counts and the stage's small resolution statistics only."""
        import ray.data

        if not parts:
            return stage.resolution_stats(empty_resolution(stage))
        items = [{"unit": unit, "name": name} for unit, name in enumerate(parts)]
        signatures = (
            ray.data.from_items(items, override_num_blocks=len(items))
            .map_batches(_block_fn(_signature_task), fn_args=(stage, self.plan), batch_size=1, batch_format="pyarrow")
            .materialize()
        )
        resolution = stage.resolve_ray(signatures.drop_columns([UNIT])).materialize()
        if resolution.count():
            joined = _join(
                stage, resolution, signatures.select_columns(["id", UNIT]), max(self.parallelism, len(parts))
            )
            joined.groupby(UNIT).map_groups(
                _block_fn(_resolution_task), fn_args=(stage, self.plan), batch_format="pyarrow"
            ).sum("rows")
        return stage.resolution_stats(resolution)

    def close(self) -> None:
        if self.started_here:
            import ray

            ray.shutdown()


def _chain_task(table: pa.Table, plan: Plan, segment: Segment) -> pa.Table:
    return SegmentChain(plan, segment)(table)


def _join(stage: GlobalStage, resolution: Dataset, units: Dataset, buckets: int) -> Dataset:
    """resolution ⋈ units on id, as one sort shuffle of both sides by a hash bucket of the id
    and an Arrow join inside each bucket (Ray Data's own join runs aggregator actors, which
    starve the tasks feeding them on a one-CPU node)."""
    bucketed = _block_fn(_bucketed)
    sides = resolution.map_batches(bucketed, fn_args=(stage, buckets, False), batch_format="pyarrow").union(
        units.map_batches(bucketed, fn_args=(stage, buckets, True), batch_format="pyarrow")
    )
    return sides.groupby(BUCKET).map_groups(_join_bucket, batch_format="pyarrow")


BUCKET = "_bucket"


def _bucketed(table: pa.Table, stage: GlobalStage, buckets: int, units: bool) -> pa.Table:
    """Rows of either side in one schema: resolution rows carry no unit, unit rows no decision."""
    schema = empty_resolution(stage).schema
    n = table.num_rows
    bucket = pa.array([zlib.crc32(i.encode()) % buckets for i in table.column("id").to_pylist()], pa.int32())
    columns = {
        f.name: table.column(f.name).cast(f.type)
        if f.name in table.column_names and (f.name == "id" or not units)
        else pa.nulls(n, f.type)
        for f in schema
    }
    columns[UNIT] = table.column(UNIT) if units else pa.nulls(n, pa.int32())
    columns[BUCKET] = bucket
    return pa.table(columns)


def _join_bucket(group: pa.Table) -> pa.Table:
    decided = group.filter(pc.is_null(group.column(UNIT))).drop_columns([UNIT, BUCKET])
    units = group.filter(pc.is_valid(group.column(UNIT))).select(["id", UNIT])
    return decided.join(units, "id", join_type="inner")


def _signature_task(table: pa.Table, stage: GlobalStage, plan: Plan) -> pa.Table:
    unit, name = table.column("unit")[0].as_py(), table.column("name")[0].as_py()
    return signatures_of_part(stage, plan.run, unit, name)


def _resolution_task(rows: pa.Table, stage: GlobalStage, plan: Plan) -> pa.Table:
    return pa.table({"rows": [write_resolution(plan.run, stage, rows)]})
