"""Large-star / small-star connected components (Kiveris et al., "Connected Components in
MapReduce and Beyond", SoCC 2014), written as per-node group functions over edge tables.

Both distributed engines shuffle edges by node and call these on each node's group, so no
worker ever holds the whole graph. The graph keeps its components through both steps;
iteration stops when it is a set of disjoint stars, each leaf pointing at its component's
smallest id, which is then the component's label.
"""
from __future__ import annotations

import pyarrow as pa

EDGE_SCHEMA = pa.schema([pa.field("src", pa.string()), pa.field("dst", pa.string())])


def _edges(pairs: list[tuple[str, str]]) -> pa.Table:
    return pa.table({"src": [a for a, _ in pairs], "dst": [b for _, b in pairs]}, schema=EDGE_SCHEMA)


def large_star(node: str, neighbors: list[str]) -> list[tuple[str, str]]:
    """Every larger neighbour of `node` links to the smallest id of node's neighbourhood."""
    nbrs = set(neighbors)
    m = min(nbrs | {node})
    return [(v, m) for v in sorted(nbrs) if v > node]


def small_star(node: str, smaller: list[str]) -> list[tuple[str, str]]:
    """`node` and its smaller neighbours all link to the smallest of them."""
    group = set(smaller) | {node}
    m = min(group)
    return [(v, m) for v in sorted(group) if v != m]


def large_star_table(group: pa.Table) -> pa.Table:
    """Group of rows (u, v) for one u, both directions of every edge present."""
    return _edges(large_star(group.column("u")[0].as_py(), group.column("v").to_pylist()))


def small_star_table(group: pa.Table) -> pa.Table:
    """Group of rows (u, v) for one u, with v < u."""
    return _edges(small_star(group.column("u")[0].as_py(), group.column("v").to_pylist()))


def symmetric(edges: pa.Table) -> pa.Table:
    src, dst = edges.column("src"), edges.column("dst")
    return pa.table({"u": pa.concat_arrays([_flat(src), _flat(dst)]), "v": pa.concat_arrays([_flat(dst), _flat(src)])})


def oriented(edges: pa.Table) -> pa.Table:
    """(u, v) with u the larger end of each edge."""
    import pyarrow.compute as pc

    src, dst = _flat(edges.column("src")), _flat(edges.column("dst"))
    greater = pc.greater(src, dst)
    return pa.table({"u": pc.if_else(greater, src, dst), "v": pc.if_else(greater, dst, src)})


def star_violations(group: pa.Table) -> pa.Table:
    """Group of rows (node, dir, other) for one node; dir 0: node -> other, 1: other -> node.
    A node breaks the star shape if it points at two nodes or both points and is pointed at."""
    dirs = group.column("dir").to_pylist()
    outs = {o for d, o in zip(dirs, group.column("other").to_pylist()) if d == 0}
    bad = len(outs) > 1 or (bool(outs) and 1 in dirs)
    return pa.table({"bad": pa.array([int(bad)], pa.int64())})


def tagged(edges: pa.Table) -> pa.Table:
    src, dst = _flat(edges.column("src")), _flat(edges.column("dst"))
    n = len(src)
    return pa.table({
        "node": pa.concat_arrays([src, dst]),
        "dir": pa.array([0] * n + [1] * n, pa.int8()),
        "other": pa.concat_arrays([dst, src]),
    })


def _flat(col) -> pa.Array:
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
