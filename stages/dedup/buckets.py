"""What one LSH bucket (or one exact key) contributes to the duplicate graph, and the
check of a cluster's members against its kept document.

Every engine calls these same functions on the same contents, so the edges, the connected
components and the verified clusters are identical on every engine by construction.
"""

from __future__ import annotations

import numpy as np


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard similarity of two sorted, distinct shingle-hash arrays."""
    if len(a) == 0 and len(b) == 0:
        return 1.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)


def bucket_edges(ids: list[str], shingle_sets: list[np.ndarray] | None, threshold: float) -> list[tuple[str, str]]:
    """Edges (member, representative) for one bucket.

    Without shingle sets every member links to the bucket's smallest id (a star). With them
    (exact-Jaccard verification) members are taken in id order and each links to the first
    earlier representative it truly resembles (Jaccard >= threshold), or becomes one itself:
    a false-positive collision then adds no edge."""
    order = sorted(range(len(ids)), key=ids.__getitem__)
    if shingle_sets is None:
        root = ids[order[0]]
        return [(ids[i], root) for i in order[1:] if ids[i] != root]
    reps: list[int] = []
    edges: list[tuple[str, str]] = []
    for i in order:
        for r in reps:
            if ids[i] == ids[r] or jaccard(shingle_sets[i], shingle_sets[r]) >= threshold:
                if ids[i] != ids[r]:
                    edges.append((ids[i], ids[r]))
                break
        else:
            reps.append(i)
    return edges


def verified_members(root_set: np.ndarray, members: list[tuple[str, np.ndarray]], threshold: float) -> list[str]:
    """Ids of the cluster members whose exact Jaccard with the cluster's kept document is at
    least `threshold`; the others were linked only through a chain and are kept."""
    return [doc for doc, shingles in members if jaccard(shingles, root_set) >= threshold]
