"""Coherence of long documents (InternLM2 §3.1.6 long-context selection), in any language.

A document is cut into windows. Each scored window is scored by a model three ways: alone,
after its preceding window, and after distant windows of the same document. In a document
written as one piece the preceding window predicts a window better than a distant one does
(it continues the same section, names the same things); in a splice of paragraphs from all over
one book, neighbours are as unrelated as any two windows, so the preceding window helps no more
than a distant one. Comparing the two contexts, rather than context against none, cancels what
every window of the source shares (its vocabulary, its style, its language):

    gain = 1 - nll(window | preceding) / nll(window | distant)

per scored window: the relative drop in cross-entropy, which has no unit, so one threshold serves
languages whose characters carry more or less information each. The document's gain is the
interquartile mean over its windows: a few windows inside one long paragraph of a splice, or a
few unrelated neighbours in a chapter (a table, a new section), do not decide it.

The model is pluggable: anything with `score_windows(windows, contexts) -> mean NLL per unit`
(nats; a context of None means no context). The default is `zlib`, a compressor with the context
as its preset dictionary: byte-level, so it needs no training and reads every language alike. An
English n-gram cache LM (`ngram`) and a refinery InternLM2 checkpoint (`internlm2`) plug in too.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

# Fewest windows a document needs: a window, its predecessor and a distant one two windows away.
MIN_WINDOWS = 4


class WindowScorer(Protocol):
    def score_windows(self, windows: list[str], contexts: list[str | None]) -> np.ndarray:
        """Mean negative log-likelihood per unit (token, character) of each window after its context."""


@dataclass(frozen=True)
class Coherence:
    gain: float
    nll_alone: float
    nll_preceding: float
    nll_distant: float
    pairs: int


class ZlibScorer:
    """Compressed size as a model: the NLL of a window is its deflate size in nats per character,
    with the context as the preset dictionary (the last 32 KB of it, deflate's reach)."""

    def __init__(self, level: int = 9):
        self.level = level

    def compressed_bytes(self, window: str, context: str | None) -> int:
        options = {"zdict": context.encode()[-32768:]} if context else {}
        compressor = zlib.compressobj(self.level, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, **options)
        return len(compressor.compress(window.encode()) + compressor.flush())

    def score_windows(self, windows: list[str], contexts: list[str | None]) -> np.ndarray:
        return np.array(
            [8 * math.log(2) * self.compressed_bytes(w, c) / max(1, len(w)) for w, c in zip(windows, contexts)]
        )


def window_size(n_chars: int, window_chars: int) -> int:
    """`window_chars`, made smaller for a document too short for MIN_WINDOWS * 2 windows of it
    (at least 100 characters), so that every document of a few hundred characters has a score."""
    return max(100, min(window_chars, n_chars // (2 * MIN_WINDOWS)))


def split_windows(text: str, window_chars: int) -> list[str]:
    """Consecutive pieces of about `window_chars`, cut at the last whitespace before the limit;
    a short tail is merged into the previous piece."""
    pieces: list[str] = []
    start, n = 0, len(text)
    while start < n:
        end = min(n, start + window_chars)
        if end < n:
            cut = text.rfind(" ", start + window_chars // 2, end)
            cut = max(cut, text.rfind("\n", start + window_chars // 2, end))
            end = cut if cut > start else end
        pieces.append(text[start:end])
        start = end
    if len(pieces) > 1 and len(pieces[-1]) < window_chars // 2:
        tail = pieces.pop()
        pieces[-1] += tail
    return [p for p in pieces if p.strip()]


def pair_indices(n_windows: int, max_pairs: int) -> list[int]:
    """Indices k >= 1 of the windows scored after window k-1, evenly spread over the document."""
    if n_windows < 2:
        return []
    candidates = np.arange(1, n_windows)
    if len(candidates) <= max_pairs:
        return candidates.tolist()
    return sorted(set(np.linspace(1, n_windows - 1, max_pairs).round().astype(int).tolist()))


def distant_indices(k: int, n_windows: int) -> list[int]:
    """The windows a third, half and two thirds of the document away from window k (cyclically),
    none of them k or its neighbours."""
    far = {(k + round(n_windows * f)) % n_windows for f in (1 / 3, 1 / 2, 2 / 3)}
    return sorted(j for j in far if min(abs(j - k), n_windows - abs(j - k)) >= 2)


def coherence(text: str, scorer: WindowScorer, window_chars: int = 1000, max_pairs: int = 32) -> Coherence | None:
    """The coherence of one document, or None when it has fewer than MIN_WINDOWS windows."""
    windows = split_windows(text, window_size(len(text), window_chars))
    if len(windows) < MIN_WINDOWS:
        return None
    ks = pair_indices(len(windows), max_pairs)
    distant = [distant_indices(k, len(windows)) for k in ks]
    targets = [windows[k] for k in ks]
    far_targets = [windows[k] for k, js in zip(ks, distant) for _ in js]
    nll = scorer.score_windows(
        targets + targets + far_targets,
        [None] * len(ks) + [windows[k - 1] for k in ks] + [windows[j] for js in distant for j in js],
    )
    alone, preceding = nll[: len(ks)], nll[len(ks) : 2 * len(ks)]
    far = np.array([f.mean() for f in np.split(nll[2 * len(ks) :], np.cumsum([len(js) for js in distant])[:-1])])
    ok = np.isfinite(alone) & np.isfinite(preceding) & np.isfinite(far) & (far > 0)
    if not ok.any():
        return None
    gains = np.sort(1.0 - preceding[ok] / far[ok])
    quarter = len(gains) // 4
    return Coherence(
        gain=float(gains[quarter : len(gains) - quarter].mean()),
        nll_alone=float(alone[ok].mean()),
        nll_preceding=float(preceding[ok].mean()),
        nll_distant=float(far[ok].mean()),
        pairs=int(ok.sum()),
    )


def load_scorer(kind: str, path: str | None = None, **options: Any) -> WindowScorer:
    """The scorer of a kind: zlib needs nothing; ngram its .npz, internlm2 its checkpoint folder (`path`)."""
    if kind == "zlib":
        return ZlibScorer(**options)
    if path is None:
        raise ValueError(f"the {kind} scorer needs a path")
    if kind == "ngram":
        from refinery.classifiers.ngram import NgramLM

        return NgramLM.load(path, **options)
    if kind == "internlm2":
        from refinery.classifiers.internlm2 import InternLM2Scorer

        return InternLM2Scorer(path, **options)
    raise ValueError(f"unknown scorer kind {kind!r} (zlib | ngram | internlm2)")
