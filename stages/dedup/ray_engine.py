"""Resolve on Ray Data: bucket shuffle with `groupby(key)`, then large-star/small-star rounds
as `groupby(node).map_groups` shuffles, then one `groupby(root)` that writes each cluster.
The driver only ever sees counts (one per block)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute in workers

from refinery.stages.dedup import components as cc
from refinery.stages.dedup.buckets import bucket_edges
from refinery.stages.dedup.graph import explode, resolution_schema


def _bucket(threshold: float):
    def edges(group: pa.Table) -> pa.Table:
        if group.num_rows < 2:
            return cc.EDGE_SCHEMA.empty_table()
        sets = None
        if "shingles" in group.column_names:
            sets = [np.asarray(s, dtype=np.int64) for s in group.column("shingles").to_pylist()]
        return cc._edges(bucket_edges(group.column("id").to_pylist(), sets, threshold))

    return edges


def _cluster(reason: str, cluster_column: str):
    schema = resolution_schema(cluster_column)

    def rows(group: pa.Table) -> pa.Table:
        """All (leaf, root) edges of one converged star: its root kept, its leaves dropped."""
        root = group.column("dst")[0].as_py()
        leaves = sorted(set(group.column("src").to_pylist()))
        return pa.table({"id": [root, *leaves], "reason": [None] + [reason] * len(leaves), cluster_column: [root] * (len(leaves) + 1)}, schema=schema)

    return rows


def _changed(edges: pa.Table) -> pa.Table:
    return pa.table({"changed": [int(pa.compute.sum(edges.column("changed")).as_py() or 0)]})


def _sort_shuffled(dataset):
    """The same rows as a dataset whose DataContext uses task-based sort shuffles: the
    resolve is a chain of many shuffles, and the default hash shuffle starts aggregator
    actors for each one (seconds per round on a small machine). The caller's context is
    left as it was."""
    import ray.data
    from ray.data.context import DataContext, ShuffleStrategy

    blocks = dataset.materialize().to_arrow_refs()
    context = DataContext.get_current()
    previous = context.shuffle_strategy
    context.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    try:
        return ray.data.from_arrow_refs(blocks) if blocks else None
    finally:
        context.shuffle_strategy = previous


def resolve_ray(signatures, *, reason: str, cluster_column: str, threshold: float, max_iterations: int, partitions: int | None = None):
    """`signatures` is a Ray Dataset of the stage's signature rows; returns a Ray Dataset
    (id, reason, <cluster_column>) with the same rows as the local resolve. `partitions` sets
    every shuffle's width (default: Ray Data's hash-shuffle parallelism)."""
    import ray.data

    rows = _sort_shuffled(signatures.map_batches(explode, batch_format="pyarrow"))
    edges = None if rows is None else rows.groupby("key", num_partitions=partitions).map_groups(_bucket(threshold), batch_format="pyarrow").materialize()
    if edges is None or edges.count() == 0:
        return ray.data.from_arrow(resolution_schema(cluster_column).empty_table())
    for _ in range(max_iterations):
        edges = edges.map_batches(cc.symmetric, batch_format="pyarrow").groupby("u", num_partitions=partitions).map_groups(cc.large_star_table, batch_format="pyarrow")
        edges = edges.map_batches(cc.oriented, batch_format="pyarrow").groupby("u", num_partitions=partitions).map_groups(cc.small_star_table, batch_format="pyarrow")
        edges = edges.materialize()
        if not sum(row["changed"] for row in edges.map_batches(_changed, batch_format="pyarrow").take_all()):
            break
    else:
        raise RuntimeError(f"connected components did not converge in {max_iterations} rounds")
    return edges.groupby("dst", num_partitions=partitions).map_groups(_cluster(reason, cluster_column), batch_format="pyarrow")
