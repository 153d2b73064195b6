"""The work a plan describes, per unit and per chunk, shared by every runner.

Units (input files or parts) are read in chunks tagged with `_unit`/`_chunk` numbers, so
outputs, partial statistics and completion markers are named the same whichever runner
produced them. A global stage runs as signatures per part, a resolve, and a filter phase
(`ResolvedFilter`) at the head of the next segment.
"""

from __future__ import annotations

from typing import Iterator, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from refinery.pipeline.plan import Plan, Segment
from refinery.pipeline.readers import READ, read_file
from refinery.pipeline.rundir import RunDir
from refinery.pipeline.stage import GlobalStage, MapStage, Verdict, run_map_stage
from refinery.pipeline.stats import StageFigures, StageStats, merge_all

UNIT, CHUNK = "_unit", "_chunk"


def tag(batch: pa.RecordBatch, unit: int, chunk: int) -> pa.RecordBatch:
    n = batch.num_rows
    batch = batch.append_column(UNIT, pa.array(np.full(n, unit, dtype=np.int32)))
    return batch.append_column(CHUNK, pa.array(np.full(n, chunk, dtype=np.int32)))


def chunk_of(batch: pa.RecordBatch) -> tuple[int, int] | None:
    if batch.num_rows == 0:
        return None
    return chunk_id(batch)


def chunk_id(batch: pa.RecordBatch) -> tuple[int, int]:
    """The (unit, chunk) tags of a batch that has rows."""
    return batch.column(UNIT)[0].as_py(), batch.column(CHUNK)[0].as_py()


def split_chunks(table: pa.Table) -> Iterator[pa.RecordBatch]:
    """One record batch per (unit, chunk) present in a table (engines may merge blocks)."""
    if table.num_rows == 0:
        return
    batch = table.combine_chunks().to_batches()[0]
    keys = np.asarray(batch.column(UNIT)).astype(np.int64) << 32 | np.asarray(batch.column(CHUNK)).astype(np.int64)
    for key in np.unique(keys):
        yield batch.filter(pa.array(keys == key))


class ResolvedFilter(MapStage):
    """The filter phase of a global stage: a map stage over its stored resolution. A chunk is
    judged against its own unit's share of the resolution only; no worker reads the whole."""

    def __init__(self, stage: GlobalStage, run: RunDir):
        super().__init__(stage.params, name=stage.name, annotate_only=stage.annotate_only)
        self.kind = stage.kind
        self.columns = stage.columns
        self.histograms = stage.histograms
        self.removes = stage.removes
        self.stage = stage
        self.run = run
        self.loaded: tuple[int, pa.Table] | None = None

    def resolution(self, unit: int) -> pa.Table:
        if self.loaded is None or self.loaded[0] != unit:
            name = self.run.resolution_part(self.name, unit)
            table = self.run.read_parquet(name) if self.run.exists(name) else empty_resolution(self.stage)
            self.loaded = (unit, table)
        return self.loaded[1]

    def process(self, batch: pa.RecordBatch) -> Verdict:
        return self.stage.verdict(batch, self.resolution(chunk_id(batch)[0]))


def segment_stages(plan: Plan, segment: Segment) -> list[MapStage]:
    """The segment's stages as map stages, the opener's filter phase first."""
    stages: list[MapStage] = list(segment.stages)
    if segment.opener is not None:
        stages.insert(0, ResolvedFilter(segment.opener, plan.run))
    return stages


def read_unit(
    plan: Plan, segment: Segment, unit: int, path: str
) -> Iterator[tuple[int, pa.RecordBatch, StageStats | None]]:
    """Chunks of one unit: number, batch tagged with unit/chunk, read statistics (segment 0 only)."""
    source: Iterator[tuple[pa.RecordBatch, StageStats | None]]
    if segment.index == 0:
        source = read_file(path, plan.job.config.input)
    else:
        source = ((b, None) for b in plan.run.open_parquet(path).iter_batches(batch_size=65536))
    for chunk, (batch, stats) in enumerate(source):
        yield chunk, tag(batch, unit, chunk), stats


def run_stage_on_chunk(plan: Plan, segment: Segment, stage: MapStage, batch: pa.RecordBatch) -> pa.RecordBatch:
    """Apply one stage to one tagged chunk and store its partial statistics."""
    where = chunk_of(batch)
    if where is None:
        return batch
    kept, stats = run_map_stage(stage, batch)
    plan.run.write_stats_part(segment.index, where[0], where[1], stats)
    if stage.route is not None:
        selected = kept.filter(pc.is_null(kept.column(stage.reason_column)))
        if selected.num_rows:
            name = plan.run.route_part(stage.route, segment.index, where[0], where[1])
            plan.run.write_parquet(name, selected.drop_columns([UNIT, CHUNK]))
    return kept


def write_chunk(plan: Plan, segment: Segment, unit: int, chunk: int, batch: pa.RecordBatch) -> int:
    """Write a chunk's kept documents (untagged) as one Parquet part, and in the last segment
    let every stage write its own per-part output; returns the row count."""
    if batch.num_rows:
        docs = batch.drop_columns([UNIT, CHUNK])
        plan.run.write_parquet(plan.run.part_name(plan.output_dir(segment), unit, chunk), docs)
        if segment.last:
            for stage in plan.stages:
                stage.write_part(plan.run, unit, chunk, docs)
    return cast(int, batch.num_rows)


def empty_resolution(stage: GlobalStage) -> pa.Table:
    fields = [pa.field("id", pa.string()), pa.field("reason", pa.string())]
    fields += [pa.field(name, dtype) for name, dtype in stage.columns.items()]
    return pa.schema(fields).empty_table()


# Per worker process: set-up stages per (run, job, segment), so models load once per worker.
_READY_STAGES: dict[tuple[str, str, int], list[MapStage]] = {}


def ready_stages(plan: Plan, segment: Segment) -> list[MapStage]:
    key = (plan.run.uri, plan.fingerprint, segment.index)
    if key not in _READY_STAGES:
        stages = segment_stages(plan, segment)
        for stage in stages:
            stage.setup()
        _READY_STAGES[key] = stages
    return _READY_STAGES[key]


def process_unit(plan: Plan, segment_index: int, unit: int, path: str) -> tuple[int, int]:
    """Read one unit, pass each chunk through the segment's stages, write parts, stats and marker.

    Returns the documents and bytes read. Used by the runners that run a whole segment per task."""
    segment = plan.segments[segment_index]
    stages = ready_stages(plan, segment)
    docs = nbytes = 0
    for chunk, batch, read_stats in read_unit(plan, segment, unit, path):
        if read_stats is not None:
            plan.run.write_stats_part(segment.index, unit, chunk, read_stats)
            docs += read_stats.docs_in
            nbytes += read_stats.bytes_in
        for stage in stages:
            batch = run_stage_on_chunk(plan, segment, stage, batch)
        write_chunk(plan, segment, unit, chunk, batch)
    plan.run.mark_done(segment.index, unit, path)
    return docs, nbytes


def signatures_of_part(stage: GlobalStage, run: RunDir, unit: int, name: str) -> pa.Table:
    """The map phase of a global stage over one Parquet part, each row tagged with the part's
    unit number (the unit it is read as in the next segment), so the resolution can be
    written per unit."""
    batches = [stage.signatures(b) for b in run.open_parquet(name).iter_batches(batch_size=65536)]
    table = pa.Table.from_batches(batches)
    return table.append_column(UNIT, pa.array(np.full(table.num_rows, unit, dtype=np.int32)))


def write_resolution(run: RunDir, stage: GlobalStage, units: pa.Table) -> int:
    """Write one unit's share of a resolution (rows tagged with `_unit`, all one unit), sorted
    by id so every engine writes the same bytes; returns its row count."""
    if units.num_rows:
        unit = units.column(UNIT)[0].as_py()
        run.write_parquet(run.resolution_part(stage.name, unit), units.drop_columns([UNIT]).sort_by("id"))
    return cast(int, units.num_rows)


def by_unit(table: pa.Table) -> Iterator[pa.Table]:
    """The rows of a `_unit`-tagged table, one table per unit."""
    if not table.num_rows:
        return
    table = table.sort_by(UNIT)
    units = table.column(UNIT).to_numpy()
    bounds = [0, *(np.flatnonzero(np.diff(units)) + 1).tolist(), len(units)]
    for start, stop in zip(bounds, bounds[1:]):
        yield table.slice(start, stop - start)


def resolve_in_process(plan: Plan, stage: GlobalStage, signatures: list[pa.Table]) -> StageFigures | None:
    """Resolve a global stage from its `_unit`-tagged signatures in this process and write the
    resolution per unit (the local runner's path); returns the stage's resolution statistics."""
    table = pa.concat_tables(signatures) if signatures else None
    if table is None or not table.num_rows:
        return stage.resolution_stats(empty_resolution(stage))
    resolution = stage.resolve_local(table.drop_columns([UNIT]))
    joined = resolution.join(table.select(["id", UNIT]), "id", join_type="inner")
    for rows in by_unit(joined):
        write_resolution(plan.run, stage, rows)
    return stage.resolution_stats(resolution)


def merge_stats(plan: Plan) -> list[StageStats]:
    """Merge every stage's partial statistics into RUN/stats/<stage>.json, in pipeline order."""
    merged = []
    kinds = {READ: READ, **{s.name: s.kind for s in plan.stages}}
    for name in plan.stage_names:
        stats = merge_all(plan.run.read_stats_parts(name), name, kinds[name])
        plan.run.write_text(plan.run.stats_file(name), stats.to_json())
        merged.append(stats)
    return merged
