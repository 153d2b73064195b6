"""Perplexity coherence of long documents (InternLM2 §3.1.6 long-context selection).

A document is cut into segments; each scored segment is scored by a causal LM twice, alone and
after its preceding segment. In a coherent document the context makes the segment easier to
predict; in a concatenation of unrelated pieces it does not. The score is the relative drop in
perplexity, `gain = 1 - ppl(segment | previous) / ppl(segment)`, averaged over segment pairs.

The LM is pluggable: anything with `score_segments(segments, contexts) -> mean NLL per token`
(nats; a context of None means no context). The project ships a CPU n-gram-with-cache model
(`ngram`) and can use a refinery InternLM2 checkpoint (`internlm2`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class SegmentScorer(Protocol):
    def score_segments(self, segments: list[str], contexts: list[str | None]) -> np.ndarray:
        """Mean negative log-likelihood per token of each segment after its context."""


@dataclass(frozen=True)
class Coherence:
    gain: float
    nll_alone: float
    nll_context: float
    pairs: int


def split_segments(text: str, segment_chars: int) -> list[str]:
    """Consecutive pieces of about `segment_chars`, cut at the last whitespace before the limit;
    a short tail is merged into the previous piece."""
    pieces: list[str] = []
    start, n = 0, len(text)
    while start < n:
        end = min(n, start + segment_chars)
        if end < n:
            cut = text.rfind(" ", start + segment_chars // 2, end)
            cut = max(cut, text.rfind("\n", start + segment_chars // 2, end))
            end = cut if cut > start else end
        pieces.append(text[start:end])
        start = end
    if len(pieces) > 1 and len(pieces[-1]) < segment_chars // 2:
        tail = pieces.pop()
        pieces[-1] += tail
    return [p for p in pieces if p.strip()]


def pair_indices(n_segments: int, max_pairs: int) -> list[int]:
    """Indices k >= 1 of the segments scored after segment k-1, evenly spread over the document."""
    if n_segments < 2:
        return []
    candidates = np.arange(1, n_segments)
    if len(candidates) <= max_pairs:
        return candidates.tolist()
    return sorted(set(np.linspace(1, n_segments - 1, max_pairs).round().astype(int).tolist()))


def coherence(text: str, scorer: SegmentScorer, segment_chars: int = 2000, max_pairs: int = 8) -> Coherence | None:
    """The coherence of one document, or None when it has fewer than two segments."""
    segments = split_segments(text, segment_chars)
    ks = pair_indices(len(segments), max_pairs)
    if not ks:
        return None
    targets = [segments[k] for k in ks]
    nll = scorer.score_segments(targets + targets, [None] * len(ks) + [segments[k - 1] for k in ks])
    alone, context = nll[: len(ks)], nll[len(ks) :]
    ok = np.isfinite(alone) & np.isfinite(context)
    if not ok.any():
        return None
    a, c = float(alone[ok].mean()), float(context[ok].mean())
    return Coherence(gain=1.0 - math.exp(c - a), nll_alone=a, nll_context=c, pairs=int(ok.sum()))


def load_scorer(kind: str, path: str, **options) -> SegmentScorer:
    if kind == "ngram":
        from refinery.classifiers.ngram import NgramLM

        return NgramLM.load(path, **options)
    if kind == "internlm2":
        from refinery.classifiers.internlm2 import InternLM2Scorer

        return InternLM2Scorer(path, **options)
    raise ValueError(f"unknown scorer kind {kind!r} (ngram | internlm2)")
