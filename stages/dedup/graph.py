"""Shared pieces of the resolve step: the signature and resolution schemas, exploding
signatures into (key, id) bucket rows, and turning components into kept/dropped rows.

Keep rule (all engines): in every cluster of two or more documents the document with the
smallest `id` (byte order of its UTF-8) is kept and names the cluster; every other member
gets the method's reason. Documents in no cluster are not in the resolution (kept).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def signature_schema(verify: bool) -> pa.Schema:
    fields = [pa.field("id", pa.string()), pa.field("keys", pa.list_(pa.int64()))]
    if verify:
        fields.append(pa.field("shingles", pa.list_(pa.int32())))
    return pa.schema(fields)


def distinct_shingles(hashes: np.ndarray, offsets: np.ndarray) -> pa.ListArray:
    """Each document's sorted distinct 32-bit shingle hashes, stored as int32 (their bits;
    Spark has no unsigned type and Jaccard only compares them)."""
    doc = np.repeat(np.arange(len(offsets) - 1, dtype=np.uint64), np.diff(offsets))
    keys = np.unique((doc << np.uint64(32)) | hashes.astype(np.uint64))
    counts = np.bincount((keys >> np.uint64(32)).astype(np.int64), minlength=len(offsets) - 1)
    list_offsets = np.zeros(len(counts) + 1, dtype=np.int32)
    np.cumsum(counts, out=list_offsets[1:])
    values = (keys & np.uint64(0xFFFFFFFF)).astype(np.uint32).view(np.int32)
    return pa.ListArray.from_arrays(pa.array(list_offsets), pa.array(values))


def resolution_schema(cluster_column: str) -> pa.Schema:
    return pa.schema(
        [pa.field("id", pa.string()), pa.field("reason", pa.string()), pa.field(cluster_column, pa.string())]
    )


def explode(signatures: pa.Table | pa.RecordBatch) -> pa.Table:
    """One row per (bucket key, document): `key`, `id` (and `shingles` when present)."""
    keys = signatures.column("keys")
    if isinstance(keys, pa.ChunkedArray):
        keys = keys.combine_chunks()
    parents = pc.list_parent_indices(keys)
    cols = {"key": pc.list_flatten(keys), "id": pc.take(signatures.column("id"), parents)}
    if "shingles" in signatures.schema.names:
        cols["shingles"] = pc.take(signatures.column("shingles"), parents)
    return pa.table(cols)


def assemble(
    members: np.ndarray | pa.Array, roots: np.ndarray | pa.Array, reason: str, cluster_column: str
) -> pa.Table:
    """Resolution rows for cluster members (ids) given each member's root id (its cluster)."""
    members = members if isinstance(members, pa.Array) else pa.array(members, pa.string())
    roots = roots if isinstance(roots, pa.Array) else pa.array(roots, pa.string())
    reasons = pc.if_else(pc.equal(members, roots), pa.scalar(None, pa.string()), pa.scalar(reason, pa.string()))
    table = pa.table(
        {"id": members, "reason": reasons, cluster_column: roots}, schema=resolution_schema(cluster_column)
    )
    return table.sort_by("id")
