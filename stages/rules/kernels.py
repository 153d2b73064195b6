"""Compiled pieces the rule families share: 64-bit hashes of code-point spans, open-addressing
tables for duplicates, lines, stripping and runs of newlines."""

from __future__ import annotations

import numba
import numpy as np

from refinery.stages.words import ALPHA, LINE_BREAK, LMN, PYSPACE

_FNV = np.uint64(0x100000001B3)
MIX = np.uint64(0x9E3779B97F4A7C15)


@numba.njit(cache=True, nogil=True, inline="always")
def hash_span(cp, s, e) -> np.uint64:
    """64-bit hash of the code points cp[s:e] and their count (FNV-1a, then splitmix64)."""
    h = np.uint64(0xCBF29CE484222325)
    for i in range(s, e):
        h = (h ^ np.uint64(cp[i])) * _FNV
    h ^= np.uint64(e - s)
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


@numba.njit(cache=True, nogil=True)
def table_bits(n):
    """Bits of an open-addressing table for n keys, filled to at most two thirds."""
    bits = 4
    while (1 << bits) < n + n // 2:
        bits += 1
    return bits


@numba.njit(cache=True, nogil=True, inline="always")
def find_slot(keys, used, key, shift) -> int:
    """The slot of `key` in an open-addressing table, or the empty slot where it goes."""
    mask = len(keys) - 1
    i = np.int64((key * MIX) >> np.uint64(shift))
    while used[i] and keys[i] != key:
        i = (i + 1) & mask
    return i


@numba.njit(cache=True, nogil=True)
def duplicates(keys, lengths) -> tuple[int, int]:
    """(elements, characters) that repeat an earlier element, elements given by their hashes."""
    bits = table_bits(len(keys))
    table = np.empty(1 << bits, dtype=np.uint64)
    used = np.zeros(1 << bits, dtype=np.bool_)
    dup = 0
    dup_chars = 0
    for j in range(len(keys)):
        i = find_slot(table, used, keys[j], 64 - bits)
        if used[i]:
            dup += 1
            dup_chars += lengths[j]
        else:
            used[i] = True
            table[i] = keys[j]
    return dup, dup_chars


@numba.njit(cache=True, nogil=True)
def splitlines(cp, starts, cls):
    """str.splitlines of every document: one pass to count the lines, one to place them."""
    n = 0
    for i in range(len(cp)):
        n += (cls[cp[i]] & LINE_BREAK) != 0
    begin = np.empty(n + len(starts), dtype=np.int64)
    end = np.empty(n + len(starts), dtype=np.int64)
    first = np.empty(len(starts), dtype=np.int64)
    n = 0
    for d in range(len(starts) - 1):
        first[d] = n
        s = starts[d]
        i = s
        b = starts[d + 1]
        while i < b:
            if cls[cp[i]] & LINE_BREAK:
                begin[n] = s
                end[n] = i
                n += 1
                if cp[i] == 13 and i + 1 < b and cp[i + 1] == 10:
                    i += 1
                s = i + 1
            i += 1
        if s < b:
            begin[n] = s
            end[n] = b
            n += 1
    first[len(starts) - 1] = n
    return begin[:n], end[:n], first


@numba.njit(cache=True, nogil=True, inline="always")
def strip_space(cp, s, e, cls):
    while s < e and cls[cp[s]] & PYSPACE:
        s += 1
    while e > s and cls[cp[e - 1]] & PYSPACE:
        e -= 1
    return s, e


@numba.njit(cache=True, nogil=True, inline="always")
def ends_with(cp, s, e, c, n) -> bool:
    """Whether cp[s:e] ends with n times the code point c."""
    if e - s < n:
        return False
    for i in range(e - n, e):
        if cp[i] != c:
            return False
    return True


@numba.njit(cache=True, nogil=True)
def split_runs(cp, s, e, min_run):
    """Boundaries of cp[s:e] split at runs of at least `min_run` newlines (re.split(r"\\n{k,}"))."""
    begin = []
    end = []
    start = s
    i = s
    while i < e:
        if cp[i] == 10:
            j = i
            while j < e and cp[j] == 10:
                j += 1
            if j - i >= min_run:
                begin.append(start)
                end.append(i)
                start = j
            i = j
        else:
            i += 1
    begin.append(start)
    end.append(e)
    return begin, end


@numba.njit(cache=True, nogil=True)
def run_duplicates(cp, begin, end) -> tuple[int, int]:
    keys = np.empty(len(begin), dtype=np.uint64)
    lengths = np.empty(len(begin), dtype=np.int64)
    for k in range(len(begin)):
        keys[k] = hash_span(cp, begin[k], end[k])
        lengths[k] = end[k] - begin[k]
    return duplicates(keys, lengths)


@numba.njit(cache=True, nogil=True, inline="always")
def word_kind(cp, cls, s, e):
    """Whether the token cp[s:e] has a letter, mark or digit (a word, not punctuation), and
    whether it has a letter: what Gopher's alphabetic-word share counts."""
    has_lmn = False
    has_alpha = False
    for i in range(s, e):
        f = cls[cp[i]]
        has_lmn |= (f & LMN) != 0
        has_alpha |= (f & ALPHA) != 0
    return has_lmn, has_alpha


@numba.njit(cache=True, nogil=True, inline="always")
def symbol_counts(cp, s, e):
    """Hashes and ellipses ("…", or each three dots in a row) in cp[s:e]: Gopher's symbol-to-word
    ratios count them."""
    hashes = 0
    ellipses = 0
    run = 0
    for i in range(s, e):
        c = cp[i]
        hashes += c == 35
        ellipses += c == 0x2026
        if c == 46:
            run += 1
        else:
            ellipses += run // 3
            run = 0
    return hashes, ellipses + run // 3
