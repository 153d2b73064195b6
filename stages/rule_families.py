"""The published heuristic rule families, compiled over a whole batch.

Each family is a numba kernel over the batch's code points (`Texts`: the text decoded once, its
word tokens and lines found once and shared) that fills one boolean column per rule, in the
family's own order (`names`). Thresholds and their sources live in the parameter classes of
`refinery.stages.rules`. Duplicates (lines, paragraphs, n-grams) are found by 64-bit hashes of
their code points in open-addressing tables. C4's bad-word rule alone stays a regular expression
per document (`c4_badwords`): its lists are large alternations over lower-cased text, which
Python's `re` runs in C.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from refinery.classifiers.blocklist import UNSPACED_LANGUAGES
from refinery.stages.words import (
    ALPHA,
    CJK,
    DECIMAL,
    LINE_BREAK,
    LMN,
    PUNCT,
    PYSPACE,
    SPACE,
    char_classes,
    cjk_documents,
    code_points,
    member,
    terminal_punctuation,
    token_end,
    tokens,
)

NAN = float("nan")


def off(value) -> float:
    """An optional threshold for the kernels: NaN when the rule is off."""
    return NAN if value is None else float(value)


def _codes(words: list[str]) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.array([ord(c) for c in "".join(words)], dtype=np.uint32),
        np.cumsum([0] + [len(w) for w in words]).astype(np.int64),
    )


class Texts:
    """A batch's text as the families read it: code points, each document's offsets, whether its
    words are characters, and its word tokens and lines, each computed on first use."""

    def __init__(self, column: pa.Array, langs: pa.Array | None):
        self.column = column
        self.langs = langs
        self.cp, self.starts = code_points(column)
        self.cjk = cjk_documents(self.cp, self.starts, langs)
        self.cls = char_classes()

    @cached_property
    def tokens(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return tokens(self.cp, self.starts, self.cjk)

    @cached_property
    def lines(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """str.splitlines of every document: line starts, ends and each document's first line."""
        return _splitlines(self.cp, self.starts, self.cls)


# ------------------------------------------------------------------ shared compiled pieces

_FNV = np.uint64(0x100000001B3)
_MIX = np.uint64(0x9E3779B97F4A7C15)


@numba.njit(cache=True, nogil=True, inline="always")
def _hash(cp, s, e) -> np.uint64:
    """64-bit hash of the code points cp[s:e] and their count (FNV-1a, then splitmix64)."""
    h = np.uint64(0xCBF29CE484222325)
    for i in range(s, e):
        h = (h ^ np.uint64(cp[i])) * _FNV
    h ^= np.uint64(e - s)
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


@numba.njit(cache=True, nogil=True)
def _slots(n):
    """Bits of an open-addressing table for n keys, filled to at most two thirds."""
    bits = 4
    while (1 << bits) < n + n // 2:
        bits += 1
    return bits


@numba.njit(cache=True, nogil=True, inline="always")
def _find(keys, used, key, shift) -> int:
    """The slot of `key` in an open-addressing table, or the empty slot where it goes."""
    mask = len(keys) - 1
    i = np.int64((key * _MIX) >> np.uint64(shift))
    while used[i] and keys[i] != key:
        i = (i + 1) & mask
    return i


@numba.njit(cache=True, nogil=True)
def _duplicates(keys, lengths) -> tuple[int, int]:
    """(elements, characters) that repeat an earlier element, elements given by their hashes."""
    bits = _slots(len(keys))
    table = np.empty(1 << bits, dtype=np.uint64)
    used = np.zeros(1 << bits, dtype=np.bool_)
    dup = 0
    dup_chars = 0
    for j in range(len(keys)):
        i = _find(table, used, keys[j], 64 - bits)
        if used[i]:
            dup += 1
            dup_chars += lengths[j]
        else:
            used[i] = True
            table[i] = keys[j]
    return dup, dup_chars


@numba.njit(cache=True, nogil=True)
def _splitlines(cp, starts, cls):
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
def _strip(cp, s, e, cls):
    while s < e and cls[cp[s]] & PYSPACE:
        s += 1
    while e > s and cls[cp[e - 1]] & PYSPACE:
        e -= 1
    return s, e


@numba.njit(cache=True, nogil=True, inline="always")
def _ends_with(cp, s, e, c, n) -> bool:
    """Whether cp[s:e] ends with n times the code point c."""
    if e - s < n:
        return False
    for i in range(e - n, e):
        if cp[i] != c:
            return False
    return True


@numba.njit(cache=True, nogil=True)
def _segments(cp, s, e, min_run):
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
def _segment_duplicates(cp, begin, end) -> tuple[int, int]:
    keys = np.empty(len(begin), dtype=np.uint64)
    lengths = np.empty(len(begin), dtype=np.int64)
    for k in range(len(begin)):
        keys[k] = _hash(cp, begin[k], end[k])
        lengths[k] = end[k] - begin[k]
    return _duplicates(keys, lengths)


# ------------------------------------------------------------------ Gopher (Rae et al. 2021, A1)

GOPHER_QUALITY = [
    "gopher_too_few_words",
    "gopher_too_many_words",
    "gopher_short_words",
    "gopher_long_words",
    "gopher_hash_ratio",
    "gopher_ellipsis_ratio",
    "gopher_bullet_lines",
    "gopher_ellipsis_lines",
    "gopher_alpha_words",
    "gopher_stop_words",
]


@numba.njit(cache=True, nogil=True)
def _gopher_quality(cp, starts, cls, tb, te, toff, lb, le, loff, cjk, stop_rule, stop, stop_off, t, out):
    min_words, max_words, min_len, max_len, symbol, bullets_max, ellipsis_max, alpha_min, stop_min = t
    for d in range(len(starts) - 1):
        n = toff[d + 1] - toff[d]
        content = 0
        content_chars = 0
        alpha = 0
        found = np.zeros(len(stop_off) - 1, dtype=np.bool_)
        for k in range(toff[d], toff[d + 1]):
            has_lmn = False
            has_alpha = False
            for i in range(tb[k], te[k]):
                f = cls[cp[i]]
                has_lmn |= (f & LMN) != 0
                has_alpha |= (f & ALPHA) != 0
            if has_lmn:
                content += 1
                content_chars += te[k] - tb[k]
            alpha += has_alpha
            for w in range(len(stop_off) - 1):
                if stop_off[w + 1] - stop_off[w] == te[k] - tb[k]:
                    same = True
                    for j in range(te[k] - tb[k]):
                        if cp[tb[k] + j] != stop[stop_off[w] + j]:
                            same = False
                            break
                    found[w] |= same
        out[d, 0] = content < min_words
        out[d, 1] = content > max_words
        if content and not cjk[d]:
            mean = content_chars / content
            out[d, 2] = mean < min_len
            out[d, 3] = mean > max_len
        if n and not np.isnan(symbol):
            hashes = 0
            ellipses = 0
            run = 0
            for i in range(starts[d], starts[d + 1]):
                c = cp[i]
                hashes += c == 35
                ellipses += c == 0x2026
                if c == 46:
                    run += 1
                else:
                    ellipses += run // 3
                    run = 0
            ellipses += run // 3
            out[d, 4] = hashes / n > symbol
            out[d, 5] = ellipses / n > symbol
        lines = loff[d + 1] - loff[d]
        if lines:
            bullets = 0
            ellipsis_lines = 0
            for k in range(loff[d], loff[d + 1]):
                s, e = _strip(cp, lb[k], le[k], cls)
                if s < e:
                    bullets += cp[s] == 0x2022 or cp[s] == 45
                    ellipsis_lines += cp[e - 1] == 0x2026 or _ends_with(cp, s, e, 46, 3)
            out[d, 6] = bullets / lines > bullets_max
            out[d, 7] = ellipsis_lines / lines > ellipsis_max
        if n:
            out[d, 8] = alpha / n < alpha_min
        if stop_rule[d]:
            out[d, 9] = found.sum() < stop_min


def gopher_quality(p, texts: Texts) -> np.ndarray:
    out = np.zeros((len(texts.starts) - 1, len(GOPHER_QUALITY)), dtype=np.bool_)
    words = sorted(set(p.stop_words))
    stop, stop_off = _codes(words)
    if texts.langs is None:
        stop_rule = np.ones(len(out), dtype=np.bool_)
    else:
        listed = pc.is_in(texts.langs, pa.array(p.stop_words_languages, type=pa.string()))
        stop_rule = pc.or_kleene(pc.is_null(texts.langs), listed).to_numpy(zero_copy_only=False)
    stop_rule &= p.min_stop_words is not None
    t = (
        off(p.min_doc_words),
        off(p.max_doc_words),
        off(p.min_avg_word_length),
        off(p.max_avg_word_length),
        off(p.max_symbol_word_ratio),
        off(p.max_bullet_lines_ratio),
        off(p.max_ellipsis_lines_ratio),
        off(p.min_alpha_words_ratio),
        off(p.min_stop_words),
    )
    _gopher_quality(
        texts.cp, texts.starts, texts.cls, *texts.tokens, *texts.lines, texts.cjk, stop_rule, stop, stop_off, t, out
    )
    return out


def gopher_repetition_names(p) -> list[str]:
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
    bits = _slots(len(keys))
    table = np.empty(1 << bits, dtype=np.uint64)
    used = np.zeros(1 << bits, dtype=np.bool_)
    counts = np.zeros(1 << bits, dtype=np.int32)
    first = np.zeros(1 << bits, dtype=np.int32)
    for j in range(len(keys)):
        i = _find(table, used, keys[j], 64 - bits)
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
    bits = _slots(len(keys))
    table = np.empty(1 << bits, dtype=np.uint64)
    used = np.zeros(1 << bits, dtype=np.bool_)
    repeated = 0
    j = 0
    while j < len(keys):
        i = _find(table, used, keys[j], 64 - bits)
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
        s, e = _strip(cp, a, b, cls)
        begin, end = _segments(cp, s, e, 2)
        dup, dup_chars = _segment_duplicates(cp, begin, end)
        out[d, 1] = dup / len(begin) > para_frac
        out[d, 2] = dup_chars / size > para_chars
        begin, end = _segments(cp, a, b, 1)
        dup, dup_chars = _segment_duplicates(cp, begin, end)
        out[d, 3] = dup / len(begin) > line_frac
        out[d, 4] = dup_chars / size > line_chars
        n = toff[d + 1] - toff[d]
        hashes = np.empty(n, dtype=np.uint64)
        offsets = np.zeros(n + 1, dtype=np.int64)
        for k in range(n):
            w = toff[d] + k
            hashes[k] = _hash(cp, tb[w], te[w])
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
                    keys[q] = (keys[q] * _MIX) ^ hashes[q + order]
                order += 1
            if kinds[j] == 0:
                out[d, columns[j]] = _top_ngram_chars(keys[: n - g + 1], offsets, g) / size > fracs[j]
            else:
                repeated = _duplicate_ngram_chars(keys[: n - g + 1], offsets, g)
                out[d, columns[j]] = repeated / size > fracs[j]
                if repeated == 0:
                    distinct = g


def gopher_repetition(p, texts: Texts) -> np.ndarray:
    out = np.zeros((len(texts.starts) - 1, len(gopher_repetition_names(p))), dtype=np.bool_)
    t = (off(p.dup_para_frac), off(p.dup_para_char_frac), off(p.dup_line_frac), off(p.dup_line_char_frac))
    rules = [(n, 0, frac) for n, frac in p.top_n_grams] + [(n, 1, frac) for n, frac in p.dup_n_grams]
    order = sorted(range(len(rules)), key=lambda j: rules[j][0])
    ngrams, kinds = (np.array([rules[j][k] for j in order], dtype=np.int64) for k in range(2))
    fracs = np.array([rules[j][2] for j in order], dtype=np.float64)
    columns = np.array([5 + j for j in order], dtype=np.int64)
    _gopher_repetition(texts.cp, texts.starts, texts.cls, *texts.tokens, t, ngrams, kinds, fracs, columns, out)
    return out


# ------------------------------------------------------------------ C4 (Raffel et al. 2020)

C4_QUALITY = ["c4_lorem_ipsum", "c4_curly_bracket", "c4_too_few_sentences"]
_C4_END = _codes(list(".?!\"'"))[0]
_C4_END_CJK = _codes(list(".?!\"'。！？”」』"))[0]
_SENTENCE_PUNCT = _codes(list(".!?。！？"))[0]
_SENTENCE_CLOSE = _codes(list("\"'”’)]」』"))[0]
_CJK_STOPS = _codes(list("。！？"))[0]
_CITATIONS, _CITATIONS_OFF = _codes(["[edit]", "[citation needed]"])
# lower-cased phrases: lorem ipsum, javascript, then the policy notices
_PHRASES, _PHRASES_OFF = _codes(
    [
        "lorem ipsum",
        "javascript",
        "terms of use",
        "privacy policy",
        "cookie policy",
        "uses cookies",
        "use of cookies",
        "use cookies",
    ]
)


_PHRASE_START = np.zeros(128, dtype=np.bool_)
_PHRASE_START[_PHRASES[_PHRASES_OFF[:-1]]] = True


@numba.njit(cache=True, nogil=True, inline="always")
def _lower_ascii(c):
    """str.lower for what can become an ASCII letter (A-Z, the Kelvin sign)."""
    if 65 <= c <= 90:
        return c + 32
    if c == 0x212A:
        return 107
    return c


@numba.njit(cache=True, nogil=True)
def _phrases_in(buf, n) -> int:
    """Which of the lower-case ASCII phrases buf[:n], lower-cased, contains: bit k for phrase k."""
    found = 0
    for i in range(n):
        c = _lower_ascii(buf[i])
        if c >= 128 or not _PHRASE_START[c]:
            continue
        for k in range(len(_PHRASES_OFF) - 1):
            start = _PHRASES_OFF[k]
            m = _PHRASES_OFF[k + 1] - start
            if _PHRASES[start] != c or i + m > n:
                continue
            j = 1
            while j < m and _lower_ascii(buf[i + j]) == _PHRASES[start + j]:
                j += 1
            if j == m:
                found |= 1 << k
    return found


@numba.njit(cache=True, nogil=True)
def _count_sentences(buf, n, cls) -> int:
    """Sentence ends in buf[:n]: a run of terminal punctuation, closing quotes or brackets, then a
    space or the end; or a run of CJK full stops anywhere. At least one per line."""
    count = 0
    i = 0
    while i < n:
        c = buf[i]
        if member(c, _SENTENCE_PUNCT):
            j = i
            while j < n and member(buf[j], _SENTENCE_PUNCT):
                j += 1
            while j < n and member(buf[j], _SENTENCE_CLOSE):
                j += 1
            if j == n or cls[buf[j]] & SPACE:
                count += 1
                i = j
                continue
            if member(c, _CJK_STOPS):
                j = i
                while j < n and member(buf[j], _CJK_STOPS):
                    j += 1
                count += 1
                i = j
                continue
        i += 1
    return max(1, count)


@numba.njit(cache=True, nogil=True)
def _cut_citations(cp, s, e, cls, buf) -> int:
    """cp[s:e] into buf without [1], [], [edit] and [citation needed]; returns its length."""
    n = 0
    i = s
    while i < e:
        if cp[i] == 91:
            j = i + 1
            while j < e and cls[cp[j]] & DECIMAL:
                j += 1
            if j < e and cp[j] == 93:
                i = j + 1
                continue
            cut = False
            for k in range(len(_CITATIONS_OFF) - 1):
                m = _CITATIONS_OFF[k + 1] - _CITATIONS_OFF[k]
                if i + m <= e:
                    cut = True
                    for q in range(m):
                        if cp[i + q] != _CITATIONS[_CITATIONS_OFF[k] + q]:
                            cut = False
                            break
                    if cut:
                        i += m
                        break
            if cut:
                continue
        buf[n] = cp[i]
        n += 1
        i += 1
    return n


@numba.njit(cache=True, nogil=True)
def _c4_quality(cp, starts, cls, lb, le, loff, cjk, flags, limits, out, rewrite, kept, kept_off):
    no_terminal, citations, lorem, javascript, curly, policy = flags
    min_sentences, min_words, max_word = limits
    longest_line = 0
    for k in range(len(lb)):
        longest_line = max(longest_line, le[k] - lb[k])
    buf = np.empty(longest_line + 1, dtype=np.uint32)
    w = 0
    for d in range(len(starts) - 1):
        kept_off[d] = w
        failed = -1
        sentences = 0
        for k in range(loff[d], loff[d + 1]):
            s, e = _strip(cp, lb[k], le[k], cls)
            words = 0
            longest = 0
            i = s
            while i < e:  # str.split()
                while i < e and cls[cp[i]] & PYSPACE:
                    i += 1
                j = i
                while j < e and not cls[cp[j]] & PYSPACE:
                    j += 1
                if j > i:
                    words += 1
                    longest = max(longest, j - i)
                i = j
            if max_word >= 0 and longest > max_word:
                continue
            if citations:
                n = _cut_citations(cp, s, e, cls, buf)
            else:
                n = e - s
                buf[:n] = cp[s:e]
            if no_terminal:
                ends = _C4_END_CJK if cjk[d] else _C4_END
                if n == 0 or not member(buf[n - 1], ends) or _ends_with(buf, 0, n, 46, 3):
                    continue
            if cjk[d]:
                words = 0
                i = 0
                while i < n:
                    j = token_end(buf, 0, n, i, cls, True)
                    if j < 0:
                        i += 1
                    else:
                        words += 1
                        i = j
            if words < min_words:
                continue
            found = _phrases_in(buf, n)
            if lorem and found & 1:
                failed = 0
                break
            if javascript and found & 2:
                continue
            if curly and member(123, buf[:n]):
                failed = 1
                break
            if policy and found >> 2:
                continue
            sentences += _count_sentences(buf, n, cls)
            if rewrite:
                kept[w : w + n] = buf[:n]
                kept[w + n] = 10
                w += n + 1
        if failed < 0 and sentences < min_sentences:
            failed = 2
        if failed >= 0:
            out[d, failed] = True
        if rewrite:
            if failed >= 0:
                w = kept_off[d] + starts[d + 1] - starts[d]
                kept[kept_off[d] : w] = cp[starts[d] : starts[d + 1]]
            else:  # "\n".join(kept).strip()
                s, e = _strip(kept, kept_off[d], w, cls)
                kept[kept_off[d] : kept_off[d] + e - s] = kept[s:e].copy()
                w = kept_off[d] + e - s
    kept_off[len(starts) - 1] = w


@numba.njit(cache=True, nogil=True)
def _encode(cp, offsets):
    """Code points → UTF-8 bytes and each row's byte offsets (an Arrow large_string's buffers)."""
    data = np.empty(4 * len(cp), dtype=np.uint8)
    out = np.empty(len(offsets), dtype=np.int64)
    k = 0
    for row in range(len(offsets) - 1):
        out[row] = k
        for i in range(offsets[row], offsets[row + 1]):
            c = cp[i]
            if c < 0x80:
                data[k] = c
                k += 1
            elif c < 0x800:
                data[k] = 0xC0 | (c >> 6)
                data[k + 1] = 0x80 | (c & 0x3F)
                k += 2
            elif c < 0x10000:
                data[k] = 0xE0 | (c >> 12)
                data[k + 1] = 0x80 | ((c >> 6) & 0x3F)
                data[k + 2] = 0x80 | (c & 0x3F)
                k += 3
            else:
                data[k] = 0xF0 | (c >> 18)
                data[k + 1] = 0x80 | ((c >> 12) & 0x3F)
                data[k + 2] = 0x80 | ((c >> 6) & 0x3F)
                data[k + 3] = 0x80 | (c & 0x3F)
                k += 4
    out[len(offsets) - 1] = k
    return data[:k], out


def c4_quality(p, texts: Texts) -> tuple[np.ndarray, pa.Array | None]:
    """C4's line filter; with `remove_lines` also the text of each page reduced to its kept lines
    (pages that fail keep their text)."""
    n = len(texts.starts) - 1
    out = np.zeros((n, len(C4_QUALITY)), dtype=np.bool_)
    flags = (
        p.filter_no_terminal_punct,
        p.remove_citations,
        p.filter_lorem_ipsum,
        p.filter_javascript,
        p.filter_curly_bracket,
        p.filter_policy,
    )
    limits = (p.min_num_sentences, p.min_words_per_line, -1 if p.max_word_length is None else p.max_word_length)
    kept = np.empty(len(texts.cp) + 1 if p.remove_lines else 0, dtype=np.uint32)
    kept_off = np.zeros(n + 1, dtype=np.int64)
    _c4_quality(
        texts.cp, texts.starts, texts.cls, *texts.lines, texts.cjk, flags, limits, out, p.remove_lines, kept, kept_off
    )
    if not p.remove_lines:
        return out, None
    data, offsets = _encode(kept, kept_off)
    return out, pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


C4_PARAGRAPH = ["c4_few_paragraphs"]


@numba.njit(cache=True, nogil=True)
def _c4_paragraph(cp, starts, min_paragraphs, min_length, out):
    for d in range(len(starts) - 1):
        lines = 1
        long = 0
        s = starts[d]
        for i in range(starts[d], starts[d + 1] + 1):
            if i == starts[d + 1] or cp[i] == 10:
                long += i - s >= min_length
                lines += i < starts[d + 1]
                s = i + 1
        out[d, 0] = lines < min_paragraphs or long < min_paragraphs


def c4_paragraph(p, texts: Texts) -> np.ndarray:
    """mC4: at least `min_paragraphs` lines (split at "\\n") of at least `min_paragraph_length` characters."""
    out = np.zeros((len(texts.starts) - 1, 1), dtype=np.bool_)
    _c4_paragraph(texts.cp, texts.starts, p.min_paragraphs, p.min_paragraph_length, out)
    return out


def trie_pattern(words: list[str]) -> str:
    """An alternation of `words` as a prefix tree: the regex engine then tries each prefix once
    instead of every word at every position."""
    trie: dict = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def emit(node: dict) -> str:
        optional = "" in node
        branches = [re.escape(ch) + emit(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if optional:
            body = f"(?:{body})?" if len(branches) > 1 or len(branches[0]) > 1 else body + "?"
        return body

    return emit(trie)


class BadWords:
    """C4's bad-word rule: one regular expression per language, built on first use."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.patterns: dict[str, re.Pattern | None] = {}

    def pattern(self, lang: str) -> re.Pattern | None:
        if lang not in self.patterns:
            path = self.folder / f"{lang}.txt"
            if not path.is_file():
                self.patterns[lang] = None
            else:
                words = sorted({w.strip().lower() for w in path.read_text(encoding="utf-8").splitlines() if w.strip()})
                alternation = trie_pattern(words)
                # Languages written without spaces match inside words; the others only whole words.
                self.patterns[lang] = re.compile(
                    alternation if lang in UNSPACED_LANGUAGES else rf"(?:\W|^)(?:{alternation})(?:\W|$)"
                )
        return self.patterns[lang]


C4_BADWORDS = ["c4_badwords"]


def c4_badwords(p, texts: Texts, lists: BadWords) -> np.ndarray:
    """The one rule judged per document in Python: `re` searches the lower-cased text."""
    langs = texts.langs.to_pylist() if texts.langs is not None else [None] * len(texts.column)
    out = np.zeros((len(langs), 1), dtype=np.bool_)
    for i, text in enumerate(texts.column.to_pylist()):
        pattern = lists.pattern(langs[i] or p.default_language)
        out[i, 0] = pattern is not None and pattern.search(text.lower()) is not None
    return out


# ------------------------------------------------------------------ FineWeb (Penedo et al. 2024)

FINEWEB_QUALITY = [
    "fineweb_empty",
    "fineweb_line_punct",
    "fineweb_short_lines",
    "fineweb_dup_line_chars",
    "fineweb_list_ratio",
]


@numba.njit(cache=True, nogil=True)
def _fineweb_quality(cp, starts, cls, toff, stops, stops_off, t, out):
    punct_thr, exclude_zero, short_thr, short_length, dup_ratio, newline_ratio = t
    for d in range(len(starts) - 1):
        a = starts[d]
        b = starts[d + 1]
        begin, end = _segments(cp, a, b, 1)
        keys = np.empty(len(begin), dtype=np.uint64)
        lengths = np.empty(len(begin), dtype=np.int64)
        lines = 0
        punct = 0
        short = 0
        for k in range(len(begin)):
            s, e = begin[k], end[k]
            blank = True
            for i in range(s, e):
                if not cls[cp[i]] & PYSPACE:
                    blank = False
                    break
            if blank:
                continue
            for q in range(len(stops_off) - 1):
                m = stops_off[q + 1] - stops_off[q]
                if e - s >= m:
                    same = True
                    for j in range(m):
                        if cp[e - m + j] != stops[stops_off[q] + j]:
                            same = False
                            break
                    if same:
                        punct += 1
                        break
            short += e - s <= short_length
            keys[lines] = _hash(cp, s, e)
            lengths[lines] = e - s
            lines += 1
        if lines == 0:
            out[d, 0] = True
            continue
        ratio = punct / lines
        out[d, 1] = ratio < punct_thr and not (ratio == 0 and exclude_zero)
        out[d, 2] = short / lines > short_thr
        newlines = 0
        for i in range(a, b):
            newlines += cp[i] == 10
        chars = b - a - newlines
        if chars:
            out[d, 3] = _duplicates(keys[:lines], lengths[:lines])[1] / chars > dup_ratio
        words = toff[d + 1] - toff[d]
        if words:
            out[d, 4] = newlines / words > newline_ratio


def fineweb_quality(p, texts: Texts) -> np.ndarray:
    out = np.zeros((len(texts.starts) - 1, len(FINEWEB_QUALITY)), dtype=np.bool_)
    stops, stops_off = _codes(sorted(terminal_punctuation()) if p.stop_chars is None else list(p.stop_chars))
    t = (
        p.line_punct_thr,
        p.line_punct_exclude_zero,
        p.short_line_thr,
        p.short_line_length,
        p.char_duplicates_ratio,
        p.new_line_ratio,
    )
    _fineweb_quality(texts.cp, texts.starts, texts.cls, texts.tokens[2], stops, stops_off, t, out)
    return out


# ------------------------------------------------------------------ InternLM2 (Cai et al. 2024, 3.1.1)

INTERNLM2 = [
    "internlm2_no_content",
    "internlm2_long_line",
    "internlm2_line_breaks",
    "internlm2_separators",
    "internlm2_char_frequency",
    "internlm2_broken_chars",
    "internlm2_punct_excess",
    "internlm2_punct_missing",
]
_SEPARATORS = _codes(list("-=_*#~+.·•|/\\<>"))[0]
_INVISIBLE = _codes(list(" \n\t\r\u3000\xa0"))[0]


@numba.njit(cache=True, nogil=True)
def _internlm2(cp, starts, cls, lb, le, loff, t, out):
    (
        max_line,
        min_lines,
        min_per_line,
        max_sep_lines,
        max_sep_runs,
        min_word_chars,
        max_broken,
        max_punct,
        min_punct,
        min_chars_punct,
    ) = t
    for d in range(len(starts) - 1):
        visible = 0
        punct = 0
        word_chars = 0
        broken = 0
        runs = 0
        run = 0
        prev = np.uint32(0)
        for i in range(starts[d], starts[d + 1]):
            c = cp[i]
            f = cls[c]
            visible += not member(c, _INVISIBLE)
            punct += (f & PUNCT) != 0
            word_chars += (f & LMN) != 0
            broken += c == 0xFFFD or c <= 8 or c == 11 or c == 12 or 14 <= c <= 31 or c == 127
            if run and c == prev:
                run += 1
            else:
                runs += run >= 20
                run = 1 if member(c, _SEPARATORS) else 0
            prev = c
        runs += run >= 20
        if visible == 0:
            out[d, 0] = True
            continue
        lines = loff[d + 1] - loff[d]
        if lines:
            longest = 0
            separators = 0
            for k in range(loff[d], loff[d + 1]):
                s, e = lb[k], le[k]
                longest = max(longest, e - s)
                while s < e and cls[cp[s]] & SPACE:
                    s += 1
                if s < e and member(cp[s], _SEPARATORS):
                    j = s
                    while j < e and cp[j] == cp[s]:
                        j += 1
                    if j - s >= 3:
                        while j < e and cls[cp[j]] & SPACE:
                            j += 1
                        separators += j == e
            out[d, 1] = longest > max_line
            out[d, 2] = lines >= min_lines and visible / lines < min_per_line
            out[d, 3] = separators / lines > max_sep_lines or runs > max_sep_runs
        out[d, 4] = word_chars / visible < min_word_chars
        out[d, 5] = broken / visible > max_broken
        out[d, 6] = punct / visible > max_punct
        out[d, 7] = visible >= min_chars_punct and punct / visible < min_punct


def internlm2(p, texts: Texts) -> np.ndarray:
    out = np.zeros((len(texts.starts) - 1, len(INTERNLM2)), dtype=np.bool_)
    t = (
        p.max_line_chars,
        p.min_lines_for_ratios,
        p.min_chars_per_line,
        p.max_separator_lines,
        p.max_separator_runs,
        p.min_word_char_ratio,
        p.max_broken_char_ratio,
        p.max_punct_ratio,
        p.min_punct_ratio,
        p.min_chars_for_punct_check,
    )
    _internlm2(texts.cp, texts.starts, texts.cls, *texts.lines, tuple(float(x) for x in t), out)
    return out


# ------------------------------------------------------------------ document statistics (long-context selection)

DOCUMENT_STATISTICS = ["dup_line_frac", "symbol_ratio", "alpha_word_frac", "bullet_line_frac", "short_line_frac"]


@numba.njit(cache=True, nogil=True)
def _document_statistics(cp, starts, cls, tb, te, toff, lb, le, loff, cjk, short_length, out):
    for d in range(len(starts) - 1):
        a = starts[d]
        b = starts[d + 1]
        begin, end = _segments(cp, a, b, 1)
        dup, _ = _segment_duplicates(cp, begin, end)
        out[d, 0] = dup / len(begin)
        n = toff[d + 1] - toff[d]
        if n:
            symbols = 0
            run = 0
            for i in range(a, b):
                c = cp[i]
                symbols += c == 35 or c == 0x2026
                if c == 46:
                    run += 1
                else:
                    symbols += run // 3
                    run = 0
            symbols += run // 3
            content = 0
            alpha = 0
            for k in range(toff[d], toff[d + 1]):
                has_lmn = False
                has_alpha = False
                for i in range(tb[k], te[k]):
                    f = cls[cp[i]]
                    has_lmn |= (f & LMN) != 0
                    has_alpha |= (f & ALPHA) != 0
                content += has_lmn
                alpha += has_alpha
            out[d, 1] = symbols / n
            out[d, 2] = alpha / max(1, content)
        lines = loff[d + 1] - loff[d]
        bullets = 0
        for k in range(loff[d], loff[d + 1]):
            s, e = _strip(cp, lb[k], le[k], cls)
            bullets += s < e and (cp[s] == 0x2022 or cp[s] == 45)
        out[d, 3] = bullets / max(1, lines)
        filled = 0
        short = 0
        for k in range(len(begin)):
            s, e = _strip(cp, begin[k], end[k], cls)
            if s < e:
                filled += 1
                width = end[k] - begin[k]
                if cjk[d]:  # Han and kana are full-width: a line of 15 of them is as long as 30 letters
                    for i in range(s, e):
                        width += (cls[cp[i]] & CJK) != 0
                short += width <= short_length
        out[d, 4] = short / max(1, filled)


def document_statistics(texts: Texts, short_line_chars: int = 30) -> np.ndarray:
    """Per document, the statistics in `DOCUMENT_STATISTICS` order, as the rules define them:
    Gopher's duplicate-line fraction, '#' and ellipses per token, bullet lines; FineWeb's share of
    non-blank lines of at most `short_line_chars` characters (Han and kana counting two, as they
    are full-width); and the share of words (tokens with a
    letter, mark or digit: punctuation and markup are not words) that have a letter. Tokens are the
    rules' (`refinery.stages.words`): Han and kana characters one word each in Chinese and Japanese
    documents, so these documents are measured in characters, not in whitespace-separated runs."""
    out = np.zeros((len(texts.starts) - 1, len(DOCUMENT_STATISTICS)), dtype=np.float64)
    _document_statistics(
        texts.cp, texts.starts, texts.cls, *texts.tokens, *texts.lines, texts.cjk, short_line_chars, out
    )
    return out
