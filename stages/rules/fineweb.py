"""FineWeb's custom quality filters (Penedo et al. 2024, section 3.4)."""

from __future__ import annotations

import numba
import numpy as np

from refinery.pipeline.core import Strict
from refinery.stages.rules.family import Family, Judgment, Texts, codes
from refinery.stages.rules.kernels import duplicates, hash_span, split_runs
from refinery.stages.words import PYSPACE, terminal_punctuation


class FineWebQuality(Strict):
    """Penedo et al. 2024 (FineWeb), section 3.4 custom filters; datatrove FineWebQualityFilter."""

    line_punct_thr: float = 0.12
    line_punct_exclude_zero: bool = False
    stop_chars: list[str] | None = None  # default: Unicode Sentence_Terminal characters
    short_line_thr: float = 0.67
    short_line_length: int = 30
    char_duplicates_ratio: float = 0.01
    new_line_ratio: float = 0.3


RULES = [
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
        begin, end = split_runs(cp, a, b, 1)
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
            keys[lines] = hash_span(cp, s, e)
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
            out[d, 3] = duplicates(keys[:lines], lengths[:lines])[1] / chars > dup_ratio
        words = toff[d + 1] - toff[d]
        if words:
            out[d, 4] = newlines / words > newline_ratio


def judge(p: FineWebQuality, texts: Texts) -> Judgment:
    out = np.zeros((len(texts.starts) - 1, len(RULES)), dtype=np.bool_)
    stops, stops_off = codes(sorted(terminal_punctuation()) if p.stop_chars is None else list(p.stop_chars))
    t = (
        p.line_punct_thr,
        p.line_punct_exclude_zero,
        p.short_line_thr,
        p.short_line_length,
        p.char_duplicates_ratio,
        p.new_line_ratio,
    )
    _fineweb_quality(texts.cp, texts.starts, texts.cls, texts.tokens[2], stops, stops_off, t, out)
    return out, None


FAMILY = Family("fineweb_quality", FineWebQuality, lambda p: RULES, judge)
