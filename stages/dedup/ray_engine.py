"""Resolve on Ray Data: bucket shuffle with `groupby(key)`, then large-star/small-star rounds
as `groupby(node).map_groups` shuffles, then one `groupby(root)` that writes each cluster
(when verifying: a `groupby(id)` brings each member its shingles first, and the cluster step
checks members against the kept document). The driver only ever sees counts (one per block)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute in workers

from refinery.stages.dedup import components as cc
from refinery.stages.dedup.buckets import bucket_edges, verified_members
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
        return pa.table(
            {
                "id": [root, *leaves],
                "reason": [None] + [reason] * len(leaves),
                cluster_column: [root] * (len(leaves) + 1),
            },
            schema=schema,
        )

    return rows


_MEMBER_SCHEMA = pa.schema(
    [pa.field("id", pa.string()), pa.field("root", pa.string()), pa.field("shingles", pa.list_(pa.int32()))]
)


def _member_rows(edges: pa.Table) -> pa.Table:
    """(leaf, root) and (root, root) rows of converged stars, shingles to be filled."""
    src, dst = edges.column("src"), edges.column("dst")
    ids = pa.chunked_array(src.chunks + dst.chunks, pa.string())
    roots = pa.chunked_array(dst.chunks + dst.chunks, pa.string())
    return pa.table(
        {"id": ids, "root": roots, "shingles": pa.nulls(len(ids), pa.list_(pa.int32()))}, schema=_MEMBER_SCHEMA
    )


def _set_rows(signatures: pa.Table) -> pa.Table:
    return pa.table(
        {
            "id": signatures.column("id"),
            "root": pa.nulls(signatures.num_rows, pa.string()),
            "shingles": signatures.column("shingles"),
        },
        schema=_MEMBER_SCHEMA,
    )


def _with_shingles(group: pa.Table) -> pa.Table:
    """One id's rows: its root (if it is in a cluster) joined with its shingle set."""
    roots = group.column("root").drop_null()
    sets = group.column("shingles").drop_null()
    if not len(roots) or not len(sets):
        return _MEMBER_SCHEMA.empty_table()
    return pa.table(
        {"id": group.column("id").slice(0, 1), "root": roots.slice(0, 1), "shingles": sets.slice(0, 1)},
        schema=_MEMBER_SCHEMA,
    )


def _verified_cluster(reason: str, cluster_column: str, threshold: float):
    schema = resolution_schema(cluster_column)

    def rows(group: pa.Table) -> pa.Table:
        root = group.column("root")[0].as_py()
        members = {
            doc: np.asarray(s, dtype=np.int64)
            for doc, s in zip(group.column("id").to_pylist(), group.column("shingles").to_pylist())
        }
        root_set = members.pop(root)
        live = sorted(verified_members(root_set, sorted(members.items()), threshold))
        if not live:
            return schema.empty_table()
        return pa.table(
            {"id": [root, *live], "reason": [None] + [reason] * len(live), cluster_column: [root] * (len(live) + 1)},
            schema=schema,
        )

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


def resolve_ray(
    signatures,
    *,
    reason: str,
    cluster_column: str,
    threshold: float,
    max_iterations: int,
    partitions: int | None = None,
):
    """`signatures` is a Ray Dataset of the stage's signature rows; returns a Ray Dataset
    (id, reason, <cluster_column>) with the same rows as the local resolve. `partitions` sets
    every shuffle's width (default: Ray Data's hash-shuffle parallelism)."""
    import ray.data

    base = _sort_shuffled(signatures)
    rows = None if base is None else base.map_batches(explode, batch_format="pyarrow")
    edges = (
        None
        if rows is None
        else rows.groupby("key", num_partitions=partitions)
        .map_groups(_bucket(threshold), batch_format="pyarrow")
        .materialize()
    )
    if edges is None or edges.count() == 0:
        return ray.data.from_arrow(resolution_schema(cluster_column).empty_table())
    for _ in range(max_iterations):
        edges = (
            edges.map_batches(cc.symmetric, batch_format="pyarrow")
            .groupby("u", num_partitions=partitions)
            .map_groups(cc.large_star_table, batch_format="pyarrow")
        )
        edges = (
            edges.map_batches(cc.oriented, batch_format="pyarrow")
            .groupby("u", num_partitions=partitions)
            .map_groups(cc.small_star_table, batch_format="pyarrow")
        )
        edges = edges.materialize()
        if not sum(row["changed"] for row in edges.map_batches(_changed, batch_format="pyarrow").take_all()):
            break
    else:
        raise RuntimeError(f"connected components did not converge in {max_iterations} rounds")
    if "shingles" not in base.schema().names:
        return edges.groupby("dst", num_partitions=partitions).map_groups(
            _cluster(reason, cluster_column), batch_format="pyarrow"
        )
    members = edges.map_batches(_member_rows, batch_format="pyarrow").union(
        base.map_batches(_set_rows, batch_format="pyarrow")
    )
    members = members.groupby("id", num_partitions=partitions).map_groups(_with_shingles, batch_format="pyarrow")
    return members.groupby("root", num_partitions=partitions).map_groups(
        _verified_cluster(reason, cluster_column, threshold), batch_format="pyarrow"
    )
