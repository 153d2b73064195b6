"""Resolve on Ray Data: bucket shuffle with `groupby(key)`, then large-star/small-star rounds
as `groupby(node).map_groups` shuffles. The driver only ever sees counts."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

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


def _members(reason: str, cluster_column: str):
    schema = resolution_schema(cluster_column)

    def row(group: pa.Table) -> pa.Table:
        node, root = group.column("src")[0].as_py(), group.column("dst")[0].as_py()
        return pa.table({"id": [node], "reason": [reason], cluster_column: [root]}, schema=schema)

    return row


def _root(cluster_column: str):
    schema = resolution_schema(cluster_column)

    def row(group: pa.Table) -> pa.Table:
        root = group.column("dst")[0].as_py()
        return pa.table({"id": [root], "reason": pa.nulls(1, pa.string()), cluster_column: [root]}, schema=schema)

    return row


def resolve_ray(signatures, *, reason: str, cluster_column: str, threshold: float, max_iterations: int, partitions: int | None = None):
    """`signatures` is a Ray Dataset of the stage's signature rows; returns a Ray Dataset
    (id, reason, <cluster_column>) with the same rows as the local resolve. `partitions` sets
    every shuffle's width (default: Ray Data's hash-shuffle parallelism)."""
    rows = signatures.map_batches(explode, batch_format="pyarrow")
    edges = rows.groupby("key", num_partitions=partitions).map_groups(_bucket(threshold), batch_format="pyarrow").materialize()
    if edges.count() == 0:
        import ray.data

        return ray.data.from_arrow(resolution_schema(cluster_column).empty_table())
    for _ in range(max_iterations):
        edges = edges.map_batches(cc.symmetric, batch_format="pyarrow").groupby("u", num_partitions=partitions).map_groups(cc.large_star_table, batch_format="pyarrow")
        edges = edges.map_batches(cc.oriented, batch_format="pyarrow").groupby("u", num_partitions=partitions).map_groups(cc.small_star_table, batch_format="pyarrow")
        edges = edges.materialize()
        if not edges.sum("changed"):
            break
    else:
        raise RuntimeError(f"connected components did not converge in {max_iterations} rounds")
    members = edges.groupby("src", num_partitions=partitions).map_groups(_members(reason, cluster_column), batch_format="pyarrow")
    roots = edges.groupby("dst", num_partitions=partitions).map_groups(_root(cluster_column), batch_format="pyarrow")
    return members.union(roots)
