"""In-process resolve: buckets by sorting, components with SciPy's sparse-graph routine."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from refinery.stages.dedup.buckets import bucket_edges
from refinery.stages.dedup.graph import assemble, explode, resolution_schema


def resolve_local(signatures: pa.Table, *, reason: str, cluster_column: str, threshold: float) -> pa.Table:
    rows = explode(signatures)
    if rows.num_rows == 0:
        return resolution_schema(cluster_column).empty_table()
    ids = np.asarray(rows.column("id").to_pylist(), dtype=object)
    nodes, node = np.unique(ids, return_inverse=True)  # nodes sorted: index order is id order
    keys = rows.column("key").to_numpy()
    order = np.lexsort((node, keys))
    keys, node = keys[order], node[order]
    first = np.ones(len(keys), dtype=bool)
    first[1:] = keys[1:] != keys[:-1]
    bucket = np.cumsum(first) - 1
    sizes = np.bincount(bucket)
    if "shingles" in rows.column_names:
        src, dst = _verified_edges(rows, order, nodes, node, bucket, sizes, threshold)
    else:
        head = node[first][bucket]
        live = node != head
        src, dst = node[live], head[live]
    if len(src) == 0:
        return resolution_schema(cluster_column).empty_table()
    graph = coo_matrix((np.ones(len(src), dtype=np.int8), (src, dst)), shape=(len(nodes), len(nodes)))
    _, label = connected_components(graph, directed=False)
    counts = np.bincount(label)
    root_of_label = np.full(len(counts), len(nodes), dtype=np.int64)
    np.minimum.at(root_of_label, label, np.arange(len(nodes)))
    member = np.flatnonzero(counts[label] > 1)
    return assemble(nodes[member], nodes[root_of_label[label[member]]], reason, cluster_column)


def _verified_edges(rows, order, nodes, node, bucket, sizes, threshold):
    shingles = rows.column("shingles").take(pa.array(order))
    multi = np.flatnonzero(sizes[bucket] > 1)
    index = {name: i for i, name in enumerate(nodes)}
    src, dst = [], []
    starts = np.flatnonzero(np.diff(np.concatenate(([-1], bucket[multi]))) != 0)
    for lo, hi in zip(starts, list(starts[1:]) + [len(multi)]):
        at = multi[lo:hi]
        members = [nodes[node[i]] for i in at]
        sets = [np.asarray(s, dtype=np.int64) for s in pc.take(shingles, pa.array(at)).to_pylist()]
        for a, b in bucket_edges(members, sets, threshold):
            src.append(index[a])
            dst.append(index[b])
    return np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)
