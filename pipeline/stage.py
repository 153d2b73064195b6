"""The stage API: map stages judge one Arrow batch at a time; global stages see every document.

A stage returns a `Verdict` (its added columns and, per named rule, which rows failed);
`apply_stage` turns that into kept rows and statistics, so a stage never counts anything
itself (the datatrove filter idea). With `annotate_only` nothing is dropped: the scores
and a `<name>_reason` column are added so thresholds can change later without recomputing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from refinery.pipeline.core import Strict
from refinery.pipeline.schema import doc_bytes
from refinery.pipeline.stats import EXAMPLE_CHARS, HistogramSpec, StageFigures, StageStats

if TYPE_CHECKING:
    from pyspark.sql import DataFrame
    from ray.data import Dataset

    from refinery.pipeline.rundir import RunDir


class StageParams(Strict):
    """Parameters of a stage; subclasses add fields. Unknown keys are config errors."""


@dataclass
class Verdict:
    """What a stage decided about every row of a batch.

    `batch` holds all input rows with the stage's columns added or replaced; `failed` maps a
    rule name to a boolean mask (dict order is rule priority: the first failing rule is the
    drop reason); `errors` maps an error kind to the rows that could not be judged. A stage
    that changes documents without dropping them reports what it did in `counts` (summed into
    the statistics' `extra`) and `examples` (label -> rows and the text to show for each).
    """

    batch: pa.RecordBatch
    failed: dict[str, np.ndarray] = field(default_factory=dict)
    errors: dict[str, np.ndarray] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, tuple[list[int], list[str]]] = field(default_factory=dict)


class Stage:
    """Base of all stages. `kind` is the YAML name; `name` the instance's unique name in a job."""

    # `kind` and `removes` are class attributes, but not ClassVars: a global stage's filter phase
    # (`execute.ResolvedFilter`) takes its stage's on the instance.
    kind: str = ""
    Params: ClassVar[type[StageParams]] = StageParams
    # Columns the stage adds, with their Arrow types (the run's output schema is known up front):
    # a class attribute, or a property where they follow from the params.
    columns: dict[str, pa.DataType] = {}
    # Columns the stage removes (e.g. extract drops the raw page).
    removes: tuple[str, ...] = ()
    # Score columns to histogram in the statistics (as `columns`: fixed, or from the params).
    histograms: dict[str, HistogramSpec] = {}
    # Stages that load a model run in an actor pool on Ray (loaded once per actor).
    uses_model: ClassVar[bool] = False
    is_global: ClassVar[bool] = False

    def __init__(
        self, params: StageParams, *, name: str | None = None, annotate_only: bool = False, route: str | None = None
    ):
        self.params = params
        self.name = name or self.kind
        # A routing stage drops nothing: the documents it would keep are also written to RUN/routes/<route>/.
        self.route = route
        self.annotate_only = annotate_only or route is not None

    @property
    def reason_column(self) -> str:
        return f"{self.name}_reason"

    def added_columns(self) -> dict[str, pa.DataType]:
        cols = dict(self.columns)
        if self.annotate_only:
            cols[self.reason_column] = pa.string()
        return cols

    @classmethod
    def check_params(cls, params: StageParams, base: Path) -> StageParams:
        """Config-time checks beyond types (e.g. a model file exists); raise ValueError.

        Returns the params to run with, their paths resolved against `base` (the config file's
        folder), as a new object: the parsed config itself is never changed."""
        return params

    def prepare(self, run: RunDir) -> StageFigures | None:
        """Driver-side step before any unit runs, for state every worker shares (decontaminate
        builds its n-gram index into the run directory `run`). What it sets on the stage travels
        to the workers with the plan. Returns the stage's own figures for its statistics
        (`{"extra": {...}}`), or None. Idempotent: a resumed run calls it again."""
        return None

    def setup(self) -> None:
        """Load models and other heavy state; called once per worker before the first batch."""

    def write_part(self, run: RunDir, unit: int, chunk: int, batch: pa.RecordBatch) -> None:
        """Worker-side: one chunk's documents as the run keeps them (after every stage), for a
        stage that writes its own output per part (tokenize: that chunk's token shards).
        `run` is the `RunDir`. Must be deterministic: the same chunk gives the same files."""

    def finalize(self, run: RunDir) -> None:
        """Driver-side step once every unit is done (tokenize merges the per-part shard
        manifests). It reads only small per-part summaries, never the documents. Idempotent."""


class MapStage(Stage):
    """A stage that decides each document from the document alone."""

    def process(self, batch: pa.RecordBatch) -> Verdict:
        raise NotImplementedError


class DocumentError(Exception):
    """Raised by a per-document check to name the error kind in the statistics."""

    def __init__(self, kind: str, message: str = ""):
        super().__init__(message or kind)
        self.kind = kind


class DocumentStage(MapStage):
    """A map stage written per document: override `evaluate(text, row)`.

    `evaluate` returns `(scores, failed_rules)`: a dict of the declared columns' values and a
    list of the rule names the document fails, in priority order (empty = keep). An exception
    marks the document errored under `DocumentError.kind` or the exception's class name.
    """

    # The columns besides `text` that `evaluate` reads from `row`; only these become Python
    # values, so a batch's other columns (token lists, raw pages) cost nothing per document.
    row_columns: ClassVar[tuple[str, ...]] = ()

    def evaluate(self, text: str, row: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        raise NotImplementedError

    def process(self, batch: pa.RecordBatch) -> Verdict:
        n = batch.num_rows
        texts = batch.column("text").to_pylist()
        others = {name: batch.column(name).to_pylist() for name in self.row_columns if name in batch.schema.names}
        values: dict[str, list[Any]] = {name: [None] * n for name in self.columns}
        failed: dict[str, np.ndarray] = {}
        errors: dict[str, np.ndarray] = {}
        for i, text in enumerate(texts):
            row = {name: col[i] for name, col in others.items()}
            try:
                scores, rules = self.evaluate(text, row)
            except Exception as exc:  # noqa: BLE001 - a bad document must not stop the run
                kind = exc.kind if isinstance(exc, DocumentError) else type(exc).__name__
                errors.setdefault(kind, np.zeros(n, dtype=bool))[i] = True
                continue
            for name, value in scores.items():
                values[name][i] = value
            for rule in rules:
                failed.setdefault(rule, np.zeros(n, dtype=bool))[i] = True
        for name, dtype in self.columns.items():
            batch = set_column(batch, name, pa.array(values[name], type=dtype))
        return Verdict(batch, failed, errors)


class GlobalStage(Stage):
    """A stage that needs every document (dedup): signatures → resolve → filter.

    `signatures(batch)` is the map phase; `resolve_local(table)` turns all signatures into a
    table `(id, reason, *annotations)` with `reason` null for kept documents; engines with a
    distributed shuffle implement `resolve_ray(dataset)` / `resolve_spark(dataframe)` with the
    same output. `verdict(batch, resolution)` is the filter phase and is shared by all engines.
    """

    is_global = True

    def signatures(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        raise NotImplementedError

    def resolve_local(self, signatures: pa.Table) -> pa.Table:
        raise NotImplementedError

    def resolve_ray(self, signatures: Dataset) -> Dataset:
        raise NotImplementedError(f"stage {self.kind!r} has no Ray resolve")

    def resolve_spark(self, signatures: DataFrame) -> DataFrame:
        raise NotImplementedError(f"stage {self.kind!r} has no Spark resolve")

    def resolution_stats(self, resolution: pa.Table | Dataset | DataFrame) -> StageFigures | None:
        """The stage's own figures about a resolution (an Arrow table, a Ray Dataset or a Spark
        DataFrame), merged into its statistics, e.g. dedup's cluster counts; None: none."""
        return None

    def verdict(self, batch: pa.RecordBatch, resolution: pa.Table) -> Verdict:
        """Join the batch with the resolution by id; a missing id is kept."""
        ids = batch.column("id")
        index = pc.index_in(ids, value_set=resolution.column("id"))
        found = pc.is_valid(index).to_numpy(zero_copy_only=False)
        take = pc.fill_null(index, 0)
        reasons = resolution.column("reason").take(take).to_pylist() if resolution.num_rows else [None] * len(ids)
        failed: dict[str, np.ndarray] = {}
        for i, reason in enumerate(reasons):
            if found[i] and reason is not None:
                failed.setdefault(reason, np.zeros(len(ids), dtype=bool))[i] = True
        for name, dtype in self.columns.items():
            if resolution.num_rows:
                col = pc.if_else(pa.array(found), resolution.column(name).take(take), pa.nulls(len(ids), dtype))
            else:
                col = pa.nulls(len(ids), dtype)
            batch = set_column(batch, name, col.cast(dtype))
        return Verdict(batch, failed)


def set_column(batch: pa.RecordBatch, name: str, values: pa.Array | pa.ChunkedArray) -> pa.RecordBatch:
    """Add or replace a column of a record batch."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    idx = batch.schema.get_field_index(name)
    if idx >= 0:
        return batch.set_column(idx, name, values)
    return batch.append_column(name, values)


def apply_verdict(
    stage: Stage, batch: pa.RecordBatch, verdict: Verdict, seconds: float = 0.0
) -> tuple[pa.RecordBatch, StageStats]:
    """Turn a verdict into the kept rows and this batch's statistics for the stage."""
    n = batch.num_rows
    stats = StageStats(stage=stage.name, kind=stage.kind, seconds=seconds)
    sizes = doc_bytes(batch)
    stats.docs_in = n
    stats.bytes_in = int(sizes.sum())
    out = verdict.batch

    errored = np.zeros(n, dtype=bool)
    error_kind = np.full(n, None, dtype=object)
    for kind, mask in verdict.errors.items():
        new = mask & ~errored
        error_kind[new] = kind
        errored |= mask
        stats.errors_by_kind[kind] = int(new.sum())

    first_reason = np.full(n, None, dtype=object)
    for rule, mask in verdict.failed.items():
        live = mask & ~errored
        if live.any():
            stats.failed_by_rule[rule] = int(live.sum())
        first_reason[live & (first_reason == None)] = rule  # noqa: E711 - elementwise
    failed_any = first_reason != None  # noqa: E711
    for rule in verdict.failed:
        count = int((first_reason == rule).sum())
        if count:
            stats.dropped_by_reason[rule] = count

    for name, spec in stage.histograms.items():
        if name in out.schema.names:
            values = out.column(name).to_numpy(zero_copy_only=False)
            values = (
                np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
                if values.dtype == object
                else values
            )
            stats.add_histogram(name, spec, values[~errored])

    ids = out.column("id").to_pylist()
    urls = out.column("url").to_pylist() if "url" in out.schema.names else [None] * n
    texts = out.column("text")
    for label, rows in _example_rows(first_reason, error_kind):
        shown = pc.utf8_slice_codeunits(texts.take(rows), 0, EXAMPLE_CHARS)  # not whole documents in Python
        stats.add_examples(label, [ids[i] for i in rows], [urls[i] for i in rows], shown.to_pylist())
    for label, (rows, shown) in verdict.examples.items():
        stats.add_examples(label, [ids[i] for i in rows], [urls[i] for i in rows], shown)
    for name, value in verdict.counts.items():
        stats.extra[name] = stats.extra.get(name, 0) + value

    stats.docs_errored = int(errored.sum())
    if stage.annotate_only:
        keep = ~errored
        out = set_column(out, stage.reason_column, pa.array(first_reason.tolist(), type=pa.string()))
    else:
        keep = ~errored & ~failed_any
    stats.docs_dropped = int((~errored & ~keep).sum())
    stats.docs_kept = int(keep.sum())
    stats.bytes_kept = int(sizes[keep].sum())
    for name in stage.removes:
        if name in out.schema.names:
            out = out.drop_columns([name])
    return out.filter(pa.array(keep)), stats


def _example_rows(first_reason: np.ndarray, error_kind: np.ndarray) -> Iterator[tuple[str, pa.Array]]:
    for labels, prefix in ((first_reason, ""), (error_kind, "error:")):
        for label in sorted({x for x in labels if x is not None}):
            yield prefix + label, pa.array(np.flatnonzero(labels == label))


def run_map_stage(stage: MapStage, batch: pa.RecordBatch) -> tuple[pa.RecordBatch, StageStats]:
    """Process one batch with one map stage; a crash inside the stage errors the batch, not the run."""
    start = time.perf_counter()
    try:
        verdict = stage.process(batch)
    except Exception as exc:  # noqa: BLE001 - counted below under the exception's name
        verdict = Verdict(batch, errors={f"stage_crash:{type(exc).__name__}": np.ones(batch.num_rows, dtype=bool)})
    return apply_verdict(stage, batch, verdict, time.perf_counter() - start)
