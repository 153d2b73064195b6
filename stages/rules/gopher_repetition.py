"""Gopher repetition filters (Rae et al. 2021, table A1): duplicate lines, paragraphs and n-grams."""

from __future__ import annotations

import numba
import numpy as np

from refinery.pipeline.core import Strict
from refinery.stages.rules.family import Family, Judgment, Texts, off
from refinery.stages.rules.kernels import MIX, find_slot, hash_span, run_duplicates, split_runs, strip_space, table_bits


class GopherRepetition(Strict):
    """Rae et al. 2021 (Gopher), table A1."""

    dup_line_frac: float | None = 0.3
    dup_para_frac: float | None = 0.3
    dup_line_char_frac: float | None = 0.2
    dup_para_char_frac: float | None = 0.2
    top_n_grams: list[tuple[int, float]] = [(2, 0.2), (3, 0.18), (4, 0.16)]
    dup_n_grams: list[tuple[int, float]] = [(5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)]


def names(p: GopherRepetition) -> list[str]:
    return (
        [
            "gopher_empty",
            "gopher_dup_para_frac",
            "gopher_dup_para_chars",
            "gopher_dup_line_frac",
            "gopher_dup_line_chars",
        ]
        + [f"gopher_top_{n}_gram" for n, _ in p.top_n_grams]
        + [f"gopher_dup_{n}_grams" for n, _ in p.dup_n_grams]
    )


@numba.njit(cache=True, nogil=True)
def _top_ngram_chars(keys, offsets, n) -> int:
    """Characters covered by the most frequent n-gram (`keys`, one per n-gram): its length (words
    joined by spaces) × count. Among equally frequent n-grams the first one seen counts."""
    bits = table_bits(len(keys))
    table = np.empty(1 << bits, dtype=np.uint64)
    used = np.zeros(1 << bits, dtype=np.bool_)
    counts = np.zeros(1 << bits, dtype=np.int32)
    first = np.zeros(1 << bits, dtype=np.int32)
    for j in range(len(keys)):
        i = find_slot(table, used, keys[j], 64 - bits)
        if not used[i]:
            used[i] = True
            table[i] = keys[j]
            first[i] = j
        counts[i] += 1
    top = 0
    at = 0
    for i in range(len(table)):
        if used[i] and (counts[i] > top or (counts[i] == top and first[i] < at)):
            top = counts[i]
            at = first[i]
    return (offsets[at + n] - offsets[at] + n - 1) * top


@numba.njit(cache=True, nogil=True)
def _duplicate_ngram_chars(keys, offsets, n) -> int:
    """Characters in n-grams (`keys`, one per n-gram) that repeat an earlier one, scanning left
    to right and jumping past each repeat so that overlapping repeats are not counted twice."""
    bits = table_bits(len(keys))
    table = np.empty(1 << bits, dtype=np.uint64)
    used = np.zeros(1 << bits, dtype=np.bool_)
    repeated = 0
    j = 0
    while j < len(keys):
        i = find_slot(table, used, keys[j], 64 - bits)
        if used[i]:
            repeated += offsets[j + n] - offsets[j]
            j += n
        else:
            used[i] = True
            table[i] = keys[j]
            j += 1
    return repeated


@numba.njit(cache=True, nogil=True)
def _gopher_repetition(cp, starts, cls, tb, te, toff, t, ngrams, kinds, fracs, columns, out):
    """`ngrams` ascending, each with its kind (0: top n-gram, 1: duplicate n-grams), threshold and
    column; an n-gram's key extends the (n-1)-gram's: key = key × MIX ^ next word."""
    para_frac, para_chars, line_frac, line_chars = t
    for d in range(len(starts) - 1):
        a = starts[d]
        b = starts[d + 1]
        size = b - a
        if size == 0:
            out[d, 0] = True
            continue
        s, e = strip_space(cp, a, b, cls)
        begin, end = split_runs(cp, s, e, 2)
        dup, dup_chars = run_duplicates(cp, begin, end)
        out[d, 1] = dup / len(begin) > para_frac
        out[d, 2] = dup_chars / size > para_chars
        begin, end = split_runs(cp, a, b, 1)
        dup, dup_chars = run_duplicates(cp, begin, end)
        out[d, 3] = dup / len(begin) > line_frac
        out[d, 4] = dup_chars / size > line_chars
        n = toff[d + 1] - toff[d]
        hashes = np.empty(n, dtype=np.uint64)
        offsets = np.zeros(n + 1, dtype=np.int64)
        for k in range(n):
            w = toff[d] + k
            hashes[k] = hash_span(cp, tb[w], te[w])
            offsets[k + 1] = offsets[k] + te[w] - tb[w]
        keys = hashes.copy()
        order = 1
        distinct = n + 1  # the shortest n-gram length found without a repeat: longer ones have none
        for j in range(len(ngrams)):
            g = ngrams[j]
            if n < g or (kinds[j] == 1 and g >= distinct):  # no top n-gram; no duplicate characters
                if kinds[j] == 1:
                    out[d, columns[j]] = 0 / size > fracs[j]
                continue
            while order < g:
                for q in range(n - order):
                    keys[q] = (keys[q] * MIX) ^ hashes[q + order]
                order += 1
            if kinds[j] == 0:
                out[d, columns[j]] = _top_ngram_chars(keys[: n - g + 1], offsets, g) / size > fracs[j]
            else:
                repeated = _duplicate_ngram_chars(keys[: n - g + 1], offsets, g)
                out[d, columns[j]] = repeated / size > fracs[j]
                if repeated == 0:
                    distinct = g


def judge(p: GopherRepetition, texts: Texts) -> Judgment:
    out = np.zeros((len(texts.starts) - 1, len(names(p))), dtype=np.bool_)
    t = (off(p.dup_para_frac), off(p.dup_para_char_frac), off(p.dup_line_frac), off(p.dup_line_char_frac))
    rules = [(n, 0, frac) for n, frac in p.top_n_grams] + [(n, 1, frac) for n, frac in p.dup_n_grams]
    order = sorted(range(len(rules)), key=lambda j: rules[j][0])
    ngrams, kinds = (np.array([rules[j][k] for j in order], dtype=np.int64) for k in range(2))
    fracs = np.array([rules[j][2] for j in order], dtype=np.float64)
    columns = np.array([5 + j for j in order], dtype=np.int64)
    _gopher_repetition(texts.cp, texts.starts, texts.cls, *texts.tokens, t, ngrams, kinds, fracs, columns, out)
    return out, None


FAMILY = Family("gopher_repetition", GopherRepetition, names, judge)
