"""In-process resolve: buckets by sorting, components with SciPy's sparse-graph routine, and
(when verifying) each member checked against its cluster's kept document."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from refinery.stages.dedup.buckets import bucket_edges, verified_members
from refinery.stages.dedup.graph import assemble, explode, resolution_schema


def resolve_local(signatures: pa.Table, *, reason: str, cluster_column: str, threshold: float) -> pa.Table:
    keys = signatures.column("keys").combine_chunks()
    if pc.sum(pc.list_value_length(keys)).as_py() in (None, 0):
        return resolution_schema(cluster_column).empty_table()
    ids = signatures.column("id").combine_chunks()
    unique = pc.unique(ids)
    nodes = unique.take(pc.sort_indices(unique))  # node index order is id order
    node_of_doc = pc.index_in(ids, value_set=nodes).to_numpy()
    node = node_of_doc[pc.list_parent_indices(keys).to_numpy()]
    keys = pc.list_flatten(keys).to_numpy()
    order = np.lexsort((node, keys))
    keys, node = keys[order], node[order]
    first = np.ones(len(keys), dtype=bool)
    first[1:] = keys[1:] != keys[:-1]
    bucket = np.cumsum(first) - 1
    sizes = np.bincount(bucket)
    names = None
    if "shingles" in signatures.column_names:
        names = nodes.to_numpy(zero_copy_only=False)
        src, dst = _verified_edges(explode(signatures), order, names, node, bucket, sizes, threshold)
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
    roots = root_of_label[label[member]]
    if names is not None:
        member, roots = _against_roots(signatures, names, member, roots, threshold)
    return assemble(nodes.take(pa.array(member)), nodes.take(pa.array(roots)), reason, cluster_column)


def _against_roots(signatures: pa.Table, nodes, member: np.ndarray, roots: np.ndarray, threshold: float):
    """Keep only members (node indices) whose Jaccard with their root passes, and roots that
    still have a member."""
    wanted = pa.array(nodes[member], pa.string())
    found = signatures.filter(pc.is_in(signatures.column("id"), value_set=wanted))
    sets = {
        doc: np.asarray(s, dtype=np.int64)
        for doc, s in zip(found.column("id").to_pylist(), found.column("shingles").to_pylist())
    }
    clusters: dict[int, list[int]] = {}
    for m, r in zip(member.tolist(), roots.tolist()):
        if m != r:
            clusters.setdefault(r, []).append(m)
    keep_member, keep_root = [], []
    for r, ms in clusters.items():
        passed = set(verified_members(sets[nodes[r]], [(nodes[m], sets[nodes[m]]) for m in ms], threshold))
        live = [m for m in ms if nodes[m] in passed]
        if live:
            keep_member += [r, *live]
            keep_root += [r] * (len(live) + 1)
    return np.asarray(keep_member, dtype=np.int64), np.asarray(keep_root, dtype=np.int64)


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
