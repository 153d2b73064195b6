"""MinHash signatures for a whole batch at once, and LSH banding.

The permutation scheme is datasketch's default ("affine32", datasketch >= 2.0): each 32-bit
shingle hash is pre-mixed with the MurmurHash3 finalizer, then permutation k maps it to
`a_k * h + b_k mod 2^32` with `a_k` odd; `a`, `b` are drawn exactly as datasketch draws them
from `numpy.random.RandomState(seed)`, so for the same seed, permutation count and shingle
hashes our values equal `datasketch.MinHash(...).hashvalues`. The signatures come from one
fused compiled loop (numba: wheels for every platform, no compiler at install time).
"""

from __future__ import annotations

from functools import lru_cache

import numba
import numpy as np

EMPTY = np.uint32(0xFFFFFFFF)


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


@numba.njit(cache=True, nogil=True)
def _kernel(mixed: np.ndarray, offsets: np.ndarray, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """One pass over each document's shingles for all permutations: the running minimum of
    `a_k * h + b_k mod 2^32` in `out[doc]`, nothing of size shingles x permutations."""
    num_perm = a.shape[0]
    mask = np.uint64(0xFFFFFFFF)
    for doc in range(offsets.shape[0] - 1):
        row = out[doc]
        for s in range(offsets[doc], offsets[doc + 1]):
            h = np.uint64(mixed[s])
            for k in range(num_perm):
                # numba widens uint32 products to 64 bits: wrap to 32 as the permutation is defined
                v = np.uint32((np.uint64(a[k]) * h + np.uint64(b[k])) & mask)
                row[k] = min(row[k], v)


def signatures(hashes: np.ndarray, offsets: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    """(documents, num_perm) uint32 MinHash values; a document without shingles is all EMPTY.
    Compiled by numba (`_kernel`); uint32 arithmetic wraps modulo 2^32 as datasketch's does."""
    a, b = permutations(num_perm, seed)
    out = np.full((len(offsets) - 1, num_perm), EMPTY, dtype=np.uint32)
    _kernel(fmix32(hashes.astype(np.uint32, copy=False)), offsets.astype(np.int64, copy=False), a, b, out)
    return out


def _integral(f, lo: float, hi: float, steps: int = 512) -> float:
    x = np.linspace(lo, hi, steps + 1)
    return float(np.trapezoid(f(x), x))


def lsh_params(threshold: float, num_perm: int, fp_weight: float = 0.5, fn_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows) minimizing the weighted false-positive and false-negative areas of the
    S-curve 1 - (1 - s^r)^b around the threshold (datasketch's optimisation)."""
    best, best_err = (1, num_perm), float("inf")
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            fp = _integral(lambda s, r=rows, b=bands: 1 - (1 - s**r) ** b, 0.0, threshold)
            fn = _integral(lambda s, r=rows, b=bands: (1 - s**r) ** b, threshold, 1.0)
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
