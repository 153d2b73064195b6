"""The InternLM2 report's format rules (Cai et al. 2024, 3.1.1): separators, line breaks,
character frequencies and punctuation."""

from __future__ import annotations

import numba
import numpy as np

from refinery.pipeline.core import Strict
from refinery.stages.rules.family import Family, Judgment, Texts, codes
from refinery.stages.words import LMN, PUNCT, SPACE, member


class InternLM2Format(Strict):
    """Cai et al. 2024 (InternLM2), 3.1.1: rules for abnormal separators and line breaks, abnormal
    character frequencies and punctuation distribution. The report gives no thresholds; these are
    ours, set so that ordinary prose, lists and code-free articles of the bundled samples pass."""

    max_line_chars: int = 20_000  # one "line" longer than this: lost line breaks
    min_lines_for_ratios: int = 10
    min_chars_per_line: float = 8.0  # text shredded into tiny lines
    max_separator_lines: float = 0.1  # lines made only of a repeated separator (----, ====)
    max_separator_runs: int = 2  # runs of 20+ separator characters
    min_word_char_ratio: float = 0.5  # letters and digits among visible characters
    max_broken_char_ratio: float = 0.01  # U+FFFD and control characters (bad decoding)
    max_punct_ratio: float = 0.3
    min_punct_ratio: float = 0.002
    min_chars_for_punct_check: int = 500


RULES = [
    "internlm2_no_content",
    "internlm2_long_line",
    "internlm2_line_breaks",
    "internlm2_separators",
    "internlm2_char_frequency",
    "internlm2_broken_chars",
    "internlm2_punct_excess",
    "internlm2_punct_missing",
]
_SEPARATORS = codes(list("-=_*#~+.·•|/\\<>"))[0]
_INVISIBLE = codes(list(" \n\t\r\u3000\xa0"))[0]


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


def judge(p: InternLM2Format, texts: Texts) -> Judgment:
    out = np.zeros((len(texts.starts) - 1, len(RULES)), dtype=np.bool_)
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
    return out, None


FAMILY = Family("internlm2", InternLM2Format, lambda p: RULES, judge)
