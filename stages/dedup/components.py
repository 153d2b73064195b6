"""Large-star / small-star connected components (Kiveris et al., "Connected Components in
MapReduce and Beyond", SoCC 2014), written as per-node group functions over edge tables.

Both distributed engines shuffle edges by node and call these on each node's group, so no
worker ever holds the whole graph. The graph keeps its components through both steps;
iteration stops when it is a set of disjoint stars, each leaf pointing at its component's
smallest id, which is then the component's label. That is the case exactly when no
large-star node had neighbours on both sides and no small-star node had two smaller
neighbours; each step marks the edges it emits from such a node (`changed`), and marks
carry forward, so one count per round decides convergence.
"""

from __future__ import annotations

import pyarrow as pa

EDGE_SCHEMA = pa.schema([pa.field("src", pa.string()), pa.field("dst", pa.string())])
FLAGGED_SCHEMA = pa.schema(
    [pa.field("src", pa.string()), pa.field("dst", pa.string()), pa.field("changed", pa.int64())]
)


def _edges(pairs: list[tuple[str, str]]) -> pa.Table:
    return pa.table({"src": [a for a, _ in pairs], "dst": [b for _, b in pairs]}, schema=EDGE_SCHEMA)


def _flagged(pairs: list[tuple[str, str]], changed: bool) -> pa.Table:
    return pa.table(
        {"src": [a for a, _ in pairs], "dst": [b for _, b in pairs], "changed": [int(changed)] * len(pairs)},
        schema=FLAGGED_SCHEMA,
    )


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
    node, nbrs = group.column("u")[0].as_py(), group.column("v").to_pylist()
    return _flagged(large_star(node, nbrs), min(nbrs) < node < max(nbrs))


def small_star_table(group: pa.Table) -> pa.Table:
    """Group of rows (u, v, changed) for one u, with v < u."""
    node, smaller = group.column("u")[0].as_py(), group.column("v").to_pylist()
    changed = len(set(smaller)) > 1 or max(group.column("changed").to_pylist()) > 0
    return _flagged(small_star(node, smaller), changed)


def symmetric(edges: pa.Table) -> pa.Table:
    src, dst = edges.column("src"), edges.column("dst")
    return pa.table({"u": pa.concat_arrays([_flat(src), _flat(dst)]), "v": pa.concat_arrays([_flat(dst), _flat(src)])})


def oriented(edges: pa.Table) -> pa.Table:
    """(u, v) with u the larger end of each edge."""
    import pyarrow.compute as pc

    src, dst = _flat(edges.column("src")), _flat(edges.column("dst"))
    greater = pc.greater(src, dst)
    return pa.table(
        {"u": pc.if_else(greater, src, dst), "v": pc.if_else(greater, dst, src), "changed": edges.column("changed")}
    )


def _flat(col) -> pa.Array:
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
