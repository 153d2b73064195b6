"""Function-level entry point: deduplicate an Arrow table of (id, text[, url]) on one engine.

Used by tests and benchmarks to run each engine directly; the pipeline runners call the
stage's `signatures` / `resolve_*` / `verdict` themselves.
"""

from __future__ import annotations

import pyarrow as pa

from refinery.stages.dedup.stage import Dedup, DedupParams


def deduplicate(table: pa.Table, *, engine: str = "local", spark=None, batch_size: int = 4096, **params) -> pa.Table:
    """Resolution (id, reason, <method>_cluster) sorted by id. `spark` is a SparkSession
    (required for engine="spark"); engine="ray" uses the current Ray context."""
    stage = Dedup(DedupParams(**params))
    parts = [stage.signatures(batch) for batch in table.to_batches(batch_size)]
    signatures = pa.Table.from_batches(parts, schema=stage.signature_schema)
    if engine == "local":
        return stage.resolve_local(signatures)
    if engine == "ray":
        import ray.data

        resolved = stage.resolve_ray(ray.data.from_arrow(signatures)).to_arrow_refs()
        import ray

        tables = [t for t in ray.get(resolved) if t.num_rows]
        out = pa.concat_tables([t.cast(_schema(stage)) for t in tables]) if tables else _schema(stage).empty_table()
        return out.sort_by("id")
    if engine == "spark":
        if spark is None:
            raise ValueError("engine='spark' needs a SparkSession")
        return stage.resolve_spark(spark.createDataFrame(signatures)).toArrow().cast(_schema(stage)).sort_by("id")
    raise ValueError(f"unknown engine {engine!r}: local, ray or spark")


def _schema(stage: Dedup) -> pa.Schema:
    from refinery.stages.dedup.graph import resolution_schema

    return resolution_schema(stage.cluster_column)
