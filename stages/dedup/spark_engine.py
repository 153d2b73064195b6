"""Resolve on Spark: bucket shuffle with `groupBy(key)`, large-star/small-star rounds as
DataFrame aggregations and joins (checkpointed locally each round to cut the lineage), and
when verifying, each member's exact Jaccard with its kept document from two joins and Spark
SQL's array functions. Plain PySpark: no GraphFrames or other jars."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from refinery.stages.dedup.buckets import bucket_edges
from refinery.stages.dedup.components import EDGE_SCHEMA, _edges


def _verified(threshold: float):
    def edges(group: pa.Table) -> pa.Table:
        if group.num_rows < 2:
            return EDGE_SCHEMA.empty_table()
        sets = [np.asarray(s, dtype=np.int64) for s in group.column("shingles").to_pylist()]
        return _edges(bucket_edges(group.column("id").to_pylist(), sets, threshold))

    return edges


def _bucket_edges(df, threshold: float):
    from pyspark.sql import functions as F

    cols = ["id", F.explode("keys").alias("key")] + (["shingles"] if "shingles" in df.columns else [])
    rows = df.where(F.col("keys").isNotNull()).select(*cols)
    heads = rows.groupBy("key").agg(F.min("id").alias("dst"), F.count("*").alias("n")).where(F.col("n") > 1)
    if "shingles" in df.columns:
        shared = rows.join(heads.select("key"), "key")
        return shared.groupBy("key").applyInArrow(_verified(threshold), schema="src string, dst string")
    return rows.join(heads, "key").where(F.col("id") != F.col("dst")).select(F.col("id").alias("src"), "dst")


def _large_star(edges):
    from pyspark.sql import functions as F

    sym = edges.select(F.col("src").alias("u"), F.col("dst").alias("v")).union(
        edges.select(F.col("dst").alias("u"), F.col("src").alias("v"))
    )
    low = sym.groupBy("u").agg(F.min("v").alias("mv"))
    return (
        sym.join(low, "u")
        .where(F.col("v") > F.col("u"))
        .select(F.col("v").alias("src"), F.least("u", "mv").alias("dst"))
        .distinct()
    )


def _small_star(edges):
    from pyspark.sql import functions as F

    ori = edges.select(F.greatest("src", "dst").alias("u"), F.least("src", "dst").alias("v"))
    low = ori.groupBy("u").agg(F.min("v").alias("m"))
    leaves = ori.join(low, "u").select(F.col("v").alias("src"), F.col("m").alias("dst"))
    centre = low.select(F.col("u").alias("src"), F.col("m").alias("dst"))
    return leaves.union(centre).where(F.col("src") != F.col("dst")).distinct()


def _is_stars(edges) -> bool:
    """True when no node points at two roots and no root points anywhere (one Spark job)."""
    from pyspark.sql import functions as F

    forked = (
        edges.groupBy("src")
        .agg(F.countDistinct("dst").alias("k"))
        .where(F.col("k") > 1)
        .select(F.col("src").alias("node"))
    )
    chained = edges.select(F.col("dst").alias("node")).intersect(edges.select(F.col("src").alias("node")))
    return forked.union(chained).limit(1).count() == 0


def _against_roots(edges, df, threshold: float):
    """(member, root) edges whose exact Jaccard passes; the same rule as
    `buckets.verified_members` (shingle lists are distinct, so intersect/union sizes are exact)."""
    from pyspark.sql import functions as F

    sets = df.select("id", "shingles")
    pairs = edges.join(sets.select(F.col("id").alias("src"), F.col("shingles").alias("a")), "src").join(
        sets.select(F.col("id").alias("dst"), F.col("shingles").alias("b")), "dst"
    )
    inter = F.size(F.array_intersect("a", "b"))
    union = F.size("a") + F.size("b") - inter
    return pairs.where(inter / union >= F.lit(threshold)).select("src", "dst").localCheckpoint()


def resolve_spark(df, *, reason: str, cluster_column: str, threshold: float, max_iterations: int):
    """`df` has the stage's signature columns; returns a DataFrame (id, reason, <cluster_column>)
    with the same rows as the local resolve."""
    from pyspark.sql import functions as F

    edges = _bucket_edges(df, threshold).distinct().localCheckpoint()
    for _ in range(max_iterations):
        edges = _small_star(_large_star(edges)).localCheckpoint()
        if _is_stars(edges):
            break
    else:
        raise RuntimeError(f"connected components did not converge in {max_iterations} rounds")
    if "shingles" in df.columns:
        edges = _against_roots(edges, df, threshold)
    members = edges.select(F.col("src").alias("id"), F.lit(reason).alias("reason"), F.col("dst").alias(cluster_column))
    roots = (
        edges.select(F.col("dst").alias("id"))
        .distinct()
        .select("id", F.lit(None).cast("string").alias("reason"), F.col("id").alias(cluster_column))
    )
    return members.unionByName(roots)
