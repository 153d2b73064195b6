"""Dedup statistics from a resolution: cluster count, cluster sizes, example clusters.

Works on a local Arrow table, a Ray Dataset or a Spark DataFrame; for the engines only the
per-cluster sizes and the few example clusters' member ids come back to the driver.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from refinery.pipeline.stats import HistogramSpec

CLUSTER_SIZES = HistogramSpec(2, 10_000, 20, log=True)
EXAMPLE_CLUSTERS = 5
EXAMPLE_MEMBERS = 5


def resolution_stats(resolution, cluster_column: str) -> dict:
    """{"extra": {...counts}, "histograms": {"cluster_size": {edges, counts}}, "examples": [...]}.

    `examples` holds the largest clusters (ties: smallest cluster id), each with its kept id
    and up to five member ids; the runner merges `extra`/`histograms` into the stage stats."""
    sizes = _sizes(resolution, cluster_column)
    ids = np.asarray(sizes.column("cluster").to_pylist(), dtype=object)
    counts = sizes.column("count").to_numpy(zero_copy_only=False).astype(np.int64)
    order = sorted(range(len(ids)), key=lambda i: (-counts[i], ids[i]))[:EXAMPLE_CLUSTERS]
    chosen = [ids[i] for i in order]
    members = _members(resolution, cluster_column, chosen)
    return {
        "extra": {
            "clusters": int(len(ids)),
            "docs_in_clusters": int(counts.sum()),
            "duplicates": int((counts - 1).sum()),
            "largest_cluster": int(counts.max()) if len(counts) else 0,
        },
        "histograms": {"cluster_size": {"edges": CLUSTER_SIZES.edges(), "counts": CLUSTER_SIZES.counts(counts)}},
        "examples": [
            {"cluster": c, "size": int(counts[i]), "kept": c, "members": members.get(c, [])[:EXAMPLE_MEMBERS]}
            for c, i in zip(chosen, order)
        ],
    }


def _sizes(resolution, column: str) -> pa.Table:
    if isinstance(resolution, pa.Table):
        return resolution.group_by(column).aggregate([("id", "count")]).rename_columns(["cluster", "count"])
    if hasattr(resolution, "groupBy"):
        return resolution.groupBy(column).count().toArrow().rename_columns(["cluster", "count"])
    refs = resolution.groupby(column).count().to_arrow_refs()
    import ray

    tables = [t.rename_columns(["cluster", "count"]) for t in ray.get(refs) if t.num_rows]
    return (
        pa.concat_tables(tables)
        if tables
        else pa.table({"cluster": pa.array([], pa.string()), "count": pa.array([], pa.int64())})
    )


def _members(resolution, column: str, clusters: list[str]) -> dict[str, list[str]]:
    if not clusters:
        return {}
    if isinstance(resolution, pa.Table):
        import pyarrow.compute as pc

        rows = resolution.filter(pc.is_in(resolution.column(column), pa.array(clusters, pa.string())))
    elif hasattr(resolution, "groupBy"):
        rows = resolution.where(resolution[column].isin(clusters)).toArrow()
    else:
        wanted = set(clusters)
        rows = resolution.filter(lambda r: r[column] in wanted).to_arrow_refs()
        import ray

        parts = [t for t in ray.get(rows) if t.num_rows]
        rows = pa.concat_tables(parts) if parts else pa.table({"id": [], column: []})
    out: dict[str, list[str]] = {}
    for doc, cluster in sorted(zip(rows.column("id").to_pylist(), rows.column(column).to_pylist())):
        out.setdefault(cluster, []).append(doc)
    return out
