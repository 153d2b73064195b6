"""The Spark runner: units spread over Spark tasks with `mapInArrow`; global stages resolve with
DataFrame shuffles (`resolve_spark`).

Each task runs a unit through the segment's stage objects, exactly as the local runner does, so
the kept documents are the same; Spark provides the scheduling, retries and the global shuffle.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Iterable, Iterator

import pyarrow as pa

from refinery.pipeline.execute import (
    UNIT,
    empty_resolution,
    process_unit,
    signatures_of_part,
    write_resolution,
)
from refinery.pipeline.plan import Plan, Segment
from refinery.pipeline.stage import GlobalStage
from refinery.pipeline.stats import StageFigures

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

UNIT_RESULT = "unit long, docs long, bytes long"


def spark_session(master: str, conf: dict[str, str] | None = None) -> SparkSession:
    """A Spark session whose Python workers use this interpreter; no jars are downloaded."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(master)
        .appName("refinery")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
    )
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


class SparkRunner:
    def __init__(self, plan: Plan, master: str | None = None, spark: SparkSession | None = None):
        cfg = plan.job.config.spark
        self.plan = plan
        self.spark = spark or spark_session(master or cfg.master, cfg.conf)

    def map_units(self, segment: Segment, pending: list[tuple[int, str]]) -> None:
        plan, index = self.plan, segment.index

        def run_units(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            for batch in batches:
                units, paths = batch.column("unit").to_pylist(), batch.column("path").to_pylist()
                results = [process_unit(plan, index, unit, path) for unit, path in zip(units, paths)]
                yield pa.RecordBatch.from_pydict(
                    {"unit": units, "docs": [r[0] for r in results], "bytes": [r[1] for r in results]}
                )

        units = self.spark.createDataFrame([(u, p) for u, p in pending], "unit long, path string")
        units.repartition(len(pending), "unit").mapInArrow(run_units, UNIT_RESULT).collect()

    def resolve(self, stage: GlobalStage, parts: list[str]) -> StageFigures | None:
        """Python tasks read the parts through pyarrow (any filesystem, no Hadoop connector),
        the stage resolves with DataFrame shuffles, and one task per unit writes that unit's
        share of the resolution, joined with the (id, unit) pairs."""
        from pyspark.sql import functions as F
        from pyspark.sql.pandas.types import from_arrow_schema

        if not parts:
            return stage.resolution_stats(empty_resolution(stage))
        plan = self.plan
        first = next(plan.run.open_parquet(parts[0]).iter_batches(batch_size=1))
        schema = from_arrow_schema(stage.signatures(first).schema.append(pa.field(UNIT, pa.int32())))

        def signatures(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            for batch in batches:
                for unit, name in zip(batch.column("unit").to_pylist(), batch.column("name").to_pylist()):
                    yield from signatures_of_part(stage, plan.run, unit, name).to_batches()

        def write(rows: pa.Table) -> pa.Table:
            return pa.table({"rows": [write_resolution(plan.run, stage, rows)]})

        names = self.spark.createDataFrame(list(enumerate(parts)), "unit int, name string")
        signed = names.repartition(len(parts), "unit").mapInArrow(signatures, schema).localCheckpoint()
        resolution = stage.resolve_spark(signed.drop(UNIT)).localCheckpoint()
        joined = resolution.join(signed.select("id", UNIT), "id")
        joined.groupBy(UNIT).applyInArrow(write, "rows long").agg(F.sum("rows")).collect()
        return stage.resolution_stats(resolution)

    def close(self) -> None:
        """The session is left to its owner: getOrCreate shares one per process."""
