"""Document statistics as the rules define them, for stages that need the figures themselves
(long-context selection) rather than a verdict: the same word tokens and lines, so no stage splits
words its own way."""

from __future__ import annotations

import numba
import numpy as np

from refinery.stages.rules.family import Texts
from refinery.stages.rules.kernels import run_duplicates, split_runs, strip_space, symbol_counts, word_kind
from refinery.stages.words import CJK

DOCUMENT_STATISTICS = ["dup_line_frac", "symbol_ratio", "alpha_word_frac", "bullet_line_frac", "short_line_frac"]


@numba.njit(cache=True, nogil=True)
def _document_statistics(cp, starts, cls, tb, te, toff, lb, le, loff, cjk, short_length, out):
    for d in range(len(starts) - 1):
        a = starts[d]
        b = starts[d + 1]
        begin, end = split_runs(cp, a, b, 1)
        dup, _ = run_duplicates(cp, begin, end)
        out[d, 0] = dup / len(begin)
        n = toff[d + 1] - toff[d]
        if n:
            hashes, ellipses = symbol_counts(cp, a, b)
            content = 0
            alpha = 0
            for k in range(toff[d], toff[d + 1]):
                has_lmn, has_alpha = word_kind(cp, cls, tb[k], te[k])
                content += has_lmn
                alpha += has_alpha
            out[d, 1] = (hashes + ellipses) / n
            out[d, 2] = alpha / max(1, content)
        lines = loff[d + 1] - loff[d]
        bullets = 0
        for k in range(loff[d], loff[d + 1]):
            s, e = strip_space(cp, lb[k], le[k], cls)
            bullets += s < e and (cp[s] == 0x2022 or cp[s] == 45)
        out[d, 3] = bullets / max(1, lines)
        filled = 0
        short = 0
        for k in range(len(begin)):
            s, e = strip_space(cp, begin[k], end[k], cls)
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
