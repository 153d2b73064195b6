"""MinHash signatures for a whole batch at once, and LSH banding.

The permutation scheme is datasketch's default ("affine32", datasketch >= 2.0): each 32-bit
shingle hash is pre-mixed with the MurmurHash3 finalizer, then permutation k maps it to
`a_k * h + b_k mod 2^32` with `a_k` odd; `a`, `b` are drawn exactly as datasketch draws them
from `numpy.random.RandomState(seed)`, so for the same seed, permutation count and shingle
hashes our values equal `datasketch.MinHash(...).hashvalues`. The shingles of a batch go
through cache-sized blocks of one broadcast product and a segmented minimum (no loop per
document or per shingle in Python).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

EMPTY = np.uint32(0xFFFFFFFF)
_CHUNK = 1 << 13  # shingles per block: a (num_perm x block) uint32 matrix of 4 MB stays in cache


@lru_cache(maxsize=16)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


def fmix32(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def signatures(hashes: np.ndarray, offsets: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    """(documents, num_perm) uint32 MinHash values; a document without shingles is all EMPTY.

    Blocks of whole documents are permuted as one (num_perm x shingles) matrix, each row a
    contiguous run, and reduced per document with `np.minimum.reduceat` along the rows; a
    document longer than a block is reduced block by block, so memory stays one block."""
    a, b = permutations(num_perm, seed)
    a, b = a[:, None], b[:, None]
    n_docs = len(offsets) - 1
    out = np.full((num_perm, n_docs), EMPTY, dtype=np.uint32)
    mixed = fmix32(hashes.astype(np.uint32, copy=False))
    buffer = np.empty((num_perm, _CHUNK), dtype=np.uint32)
    doc = 0
    while doc < n_docs:
        stop = int(np.searchsorted(offsets, offsets[doc] + _CHUNK, side="right")) - 1
        stop = min(max(stop, doc + 1), n_docs)
        lo, hi = offsets[doc], offsets[stop]
        if hi - lo > _CHUNK:  # one document longer than a block: a running minimum, block by block
            for start in range(lo, hi, _CHUNK):
                block = buffer[:, : min(_CHUNK, hi - start)]
                np.multiply(a, mixed[start : start + block.shape[1]], out=block)
                np.add(block, b, out=block)
                np.minimum(out[:, doc], block.min(axis=1), out=out[:, doc])
        elif hi > lo:
            block = buffer[:, : hi - lo]
            np.multiply(a, mixed[lo:hi], out=block)
            np.add(block, b, out=block)
            nonempty = np.flatnonzero(np.diff(offsets[doc : stop + 1]) > 0)
            out[:, doc + nonempty] = np.minimum.reduceat(block, offsets[doc + nonempty] - lo, axis=1)
        doc = stop
    return np.ascontiguousarray(out.T)


def _integral(f, lo: float, hi: float, steps: int = 512) -> float:
    x = np.linspace(lo, hi, steps + 1)
    return float(np.trapezoid(f(x), x))


def lsh_params(threshold: float, num_perm: int, fp_weight: float = 0.5, fn_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows) minimizing the weighted false-positive and false-negative areas of the
    S-curve 1 - (1 - s^r)^b around the threshold (datasketch's optimisation)."""
    best, best_err = (1, num_perm), float("inf")
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            fp = _integral(lambda s: 1 - (1 - s**rows) ** bands, 0.0, threshold)
            fn = _integral(lambda s: (1 - s**rows) ** bands, threshold, 1.0)
            err = fp * fp_weight + fn * fn_weight
            if err < best_err:
                best, best_err = (bands, rows), err
    return best


def band_keys(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(documents, bands) signed 64-bit bucket keys; the band number is mixed in, so keys of
    different bands never meet in one bucket."""
    n = sigs.shape[0]
    keys = np.empty((n, bands), dtype=np.uint64)
    for band in range(bands):
        h = np.full(n, (0x9E3779B97F4A7C15 * (band + 1)) & 0xFFFFFFFFFFFFFFFF, dtype=np.uint64)
        for j in range(band * rows, (band + 1) * rows):
            h = (h ^ sigs[:, j].astype(np.uint64)) * np.uint64(0xBF58476D1CE4E5B9)
            h ^= h >> np.uint64(31)
        keys[:, band] = h
    return keys.view(np.int64)
