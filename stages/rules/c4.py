"""C4 (Raffel et al. 2020): its line filter, mC4's paragraph rule and the bad-word rule."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numba
import numpy as np
import pyarrow as pa

from refinery.classifiers.blocklist import WordBlocklist
from refinery.pipeline.core import Strict
from refinery.pipeline.resources import bundled
from refinery.stages.rules.family import Family, Judgment, Texts, codes
from refinery.stages.rules.kernels import ends_with, strip_space
from refinery.stages.words import DECIMAL, PYSPACE, SPACE, member, token_end


class C4Quality(Strict):
    """Raffel et al. 2020 (C4), section 2.2, and its reference code (tfds c4_utils).

    FineWeb ran it with `filter_no_terminal_punct: false`; C4 itself with true."""

    filter_no_terminal_punct: bool = True
    min_num_sentences: int = 5
    min_words_per_line: int = 3
    max_word_length: int | None = 1000
    remove_citations: bool = True
    filter_lorem_ipsum: bool = True
    filter_javascript: bool = True
    filter_curly_bracket: bool = True
    filter_policy: bool = True
    # C4 also rewrites the page to its kept lines; with false the stage only judges.
    remove_lines: bool = False


class C4Paragraph(Strict):
    """mC4 (Xue et al. 2021): at least 3 lines of 200+ characters (tfds c4_utils.paragraph_filter)."""

    min_paragraphs: int = 3
    min_paragraph_length: int = 200


class C4BadWords(Strict):
    """C4: drop pages with a word of the LDNOOBW list of the document's language.

    Off by default (`c4_badwords: {}` turns it on, for parity with C4): one listed word anywhere
    drops a page, which removes clean prose by and about minorities, history and medicine
    ("intercourse", "bondage of slavery", "Dick" as a name; Dodge et al. 2021). FineWeb does not
    use it; the classify stage's word blocklist judges by hit rate instead."""

    # Folder of <lang>.txt lists; default: the bundled conf/rules/badwords.
    folder: str | None = None
    default_language: str = "en"


QUALITY_RULES = ["c4_lorem_ipsum", "c4_curly_bracket", "c4_too_few_sentences"]
_C4_END = codes(list(".?!\"'"))[0]
_C4_END_CJK = codes(list(".?!\"'。！？”」』"))[0]
_SENTENCE_PUNCT = codes(list(".!?。！？"))[0]
_SENTENCE_CLOSE = codes(list("\"'”’)]」』"))[0]
_CJK_STOPS = codes(list("。！？"))[0]
_CITATIONS, _CITATIONS_OFF = codes(["[edit]", "[citation needed]"])
# lower-cased phrases: lorem ipsum, javascript, then the policy notices
_PHRASES, _PHRASES_OFF = codes(
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
            s, e = strip_space(cp, lb[k], le[k], cls)
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
                if n == 0 or not member(buf[n - 1], ends) or ends_with(buf, 0, n, 46, 3):
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
                s, e = strip_space(kept, kept_off[d], w, cls)
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


def judge_quality(p: C4Quality, texts: Texts) -> Judgment:
    """C4's line filter; with `remove_lines` also the text of each page reduced to its kept lines
    (pages that fail keep their text)."""
    n = len(texts.starts) - 1
    out = np.zeros((n, len(QUALITY_RULES)), dtype=np.bool_)
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


PARAGRAPH_RULES = ["c4_few_paragraphs"]


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


def judge_paragraph(p: C4Paragraph, texts: Texts) -> Judgment:
    """mC4: at least `min_paragraphs` lines (split at "\\n") of at least `min_paragraph_length` characters."""
    out = np.zeros((len(texts.starts) - 1, 1), dtype=np.bool_)
    _c4_paragraph(texts.cp, texts.starts, p.min_paragraphs, p.min_paragraph_length, out)
    return out, None


# The bundled LDNOOBW lists, one file per language (refinery.pipeline.resources.bundled).
BADWORDS_FOLDER = "conf/rules/badwords"


@lru_cache(maxsize=None)
def bad_words(folder: str | None) -> WordBlocklist:
    """The lists of a folder (default: the bundled ones), loaded once per process and only when
    the rule is on."""
    return WordBlocklist(Path(folder) if folder else bundled(BADWORDS_FOLDER))


BADWORDS_RULES = ["c4_badwords"]


def judge_badwords(p: C4BadWords, texts: Texts) -> Judgment:
    """The one rule judged per document in Python: `re` searches the lower-cased text."""
    lists = bad_words(p.folder)
    langs = texts.langs.to_pylist() if texts.langs is not None else [None] * len(texts.column)
    out = np.zeros((len(langs), 1), dtype=np.bool_)
    for i, text in enumerate(texts.column.to_pylist()):
        out[i, 0] = lists.found(text, langs[i] or p.default_language)
    return out, None


QUALITY = Family("c4_quality", C4Quality, lambda p: QUALITY_RULES, judge_quality)
PARAGRAPH = Family("c4_paragraph", C4Paragraph, lambda p: PARAGRAPH_RULES, judge_paragraph)
BADWORDS = Family("c4_badwords", C4BadWords, lambda p: BADWORDS_RULES, judge_badwords)
