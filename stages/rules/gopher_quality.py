"""Gopher quality filters (Rae et al. 2021, appendix A1), compiled over the batch."""

from __future__ import annotations

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from refinery.pipeline.core import Strict
from refinery.stages.rules.family import Family, Judgment, Texts, codes, off
from refinery.stages.rules.kernels import ends_with, strip_space, symbol_counts, word_kind


class GopherQuality(Strict):
    """Rae et al. 2021 (Gopher), appendix A1 "quality filters"; datatrove GopherQualityFilter defaults."""

    min_doc_words: int | None = 50
    max_doc_words: int | None = 100_000
    min_avg_word_length: float | None = 3
    max_avg_word_length: float | None = 10
    max_symbol_word_ratio: float | None = 0.1  # '#' and ellipses per word
    max_bullet_lines_ratio: float | None = 0.9
    max_ellipsis_lines_ratio: float | None = 0.3
    min_alpha_words_ratio: float | None = 0.8  # words with at least one letter
    min_stop_words: int | None = 2
    stop_words: list[str] = ["the", "be", "to", "of", "and", "that", "have", "with"]
    # The stop words are English: the rule applies to these languages (and to documents with no
    # `lang` column, as in Gopher, which ran on English only).
    stop_words_languages: list[str] = ["en"]


RULES = [
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
            has_lmn, has_alpha = word_kind(cp, cls, tb[k], te[k])
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
            hashes, ellipses = symbol_counts(cp, starts[d], starts[d + 1])
            out[d, 4] = hashes / n > symbol
            out[d, 5] = ellipses / n > symbol
        lines = loff[d + 1] - loff[d]
        if lines:
            bullets = 0
            ellipsis_lines = 0
            for k in range(loff[d], loff[d + 1]):
                s, e = strip_space(cp, lb[k], le[k], cls)
                if s < e:
                    bullets += cp[s] == 0x2022 or cp[s] == 45
                    ellipsis_lines += cp[e - 1] == 0x2026 or ends_with(cp, s, e, 46, 3)
            out[d, 6] = bullets / lines > bullets_max
            out[d, 7] = ellipsis_lines / lines > ellipsis_max
        if n:
            out[d, 8] = alpha / n < alpha_min
        if stop_rule[d]:
            out[d, 9] = found.sum() < stop_min


def judge(p: GopherQuality, texts: Texts) -> Judgment:
    out = np.zeros((len(texts.starts) - 1, len(RULES)), dtype=np.bool_)
    words = sorted(set(p.stop_words))
    stop, stop_off = codes(words)
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
    return out, None


FAMILY = Family("gopher_quality", GopherQuality, lambda p: RULES, judge)
