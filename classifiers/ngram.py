"""A word trigram language model with a unigram cache, small enough to train on CPU in seconds.

The n-gram part (Witten-Bell interpolation down to an add-one unigram) sees only the last two
words, so by itself it cannot tell whether an earlier window helps. The cache (Kuhn & De Mori,
1990) can: it mixes in the distribution of the words already read, `p = (1-λ)·p_trigram +
λ·p_cache`. Scoring a window with the preceding window in the cache versus without it
measures how much that context predicts the window — the perplexity-coherence signal of the
long-context selection. Counts are stored as sorted int64 keys, so lookups are vectorised.
"""

from __future__ import annotations

import io
import os
import re
from collections import Counter
from typing import Iterable

import numpy as np

from refinery.pipeline.storage import replacing

_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)
# Scripts written without spaces: a run of them is one `\w+` token, so the model reads each
# character as a word instead (Thai, Lao, Myanmar, Khmer, kana, Han).
_UNSPACED = re.compile(
    "([\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff])"
)
UNK = 0


def tokens(text: str) -> list[str]:
    """Lower-cased words and single punctuation marks: what the fastText classifiers
    (`fasttext_model.prepare`) read."""
    return _TOKEN.findall(text.lower())


def lm_tokens(text: str) -> list[str]:
    """`tokens`, with every character of the unspaced scripts a token of its own: what the n-gram
    model reads, so that its perplexity means the same in Chinese as in English."""
    out: list[str] = []
    for token in tokens(text):
        if _UNSPACED.search(token):
            out.extend(part for part in _UNSPACED.split(token) if part)
        else:
            out.append(token)
    return out


class _Table:
    """Counts of n-grams keyed by an int64, plus per-context totals and distinct continuations."""

    def __init__(
        self, keys: np.ndarray, counts: np.ndarray, ctx_keys: np.ndarray, ctx_totals: np.ndarray, ctx_types: np.ndarray
    ):
        self.keys, self.counts = keys, counts
        self.ctx_keys, self.ctx_totals, self.ctx_types = ctx_keys, ctx_totals, ctx_types

    @classmethod
    def build(cls, counter: Counter, vocab: int) -> "_Table":
        keys = np.fromiter(counter.keys(), dtype=np.int64, count=len(counter))
        counts = np.fromiter(counter.values(), dtype=np.int64, count=len(counter))
        order = np.argsort(keys)
        keys, counts = keys[order], counts[order]
        ctx = keys // vocab
        ctx_keys, start = np.unique(ctx, return_index=True)
        ctx_totals = np.add.reduceat(counts, start) if len(keys) else np.zeros(0, np.int64)
        ctx_types = np.diff(np.append(start, len(keys)))
        return cls(keys, counts, ctx_keys, ctx_totals, ctx_types)

    @staticmethod
    def _lookup(sorted_keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
        if len(sorted_keys) == 0:
            return np.zeros(len(query), dtype=np.float64)
        pos = np.clip(np.searchsorted(sorted_keys, query), 0, len(sorted_keys) - 1)
        return np.where(sorted_keys[pos] == query, values[pos], 0).astype(np.float64)

    def count(self, query: np.ndarray) -> np.ndarray:
        return self._lookup(self.keys, self.counts, query)

    def context(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._lookup(self.ctx_keys, self.ctx_totals, query), self._lookup(self.ctx_keys, self.ctx_types, query)


class NgramLM:
    """Trigram + cache LM; implements `score_windows` of the coherence scorer interface. English
    only: its vocabulary is that of its training speeches."""

    def __init__(
        self, vocab: list[str], unigram: np.ndarray, bigrams: _Table, trigrams: _Table, cache_weight: float = 0.2
    ):
        self.vocab = vocab
        self.index = {w: i for i, w in enumerate(vocab)}
        self.unigram = unigram.astype(np.float64)
        self.bigrams, self.trigrams = bigrams, trigrams
        self.cache_weight = cache_weight
        self._p_uni = (self.unigram + 1.0) / (self.unigram.sum() + len(vocab))

    @classmethod
    def train(
        cls, texts: Iterable[str], vocab_size: int = 20_000, min_count: int = 2, cache_weight: float = 0.2
    ) -> "NgramLM":
        docs = [lm_tokens(t) for t in texts]
        freq = Counter(w for doc in docs for w in doc)
        words = [w for w, c in freq.most_common(vocab_size - 1) if c >= min_count]
        vocab = ["<unk>"] + words
        index = {w: i for i, w in enumerate(vocab)}
        v = len(vocab)
        unigram = np.zeros(v, dtype=np.int64)
        bi: Counter = Counter()
        tri: Counter = Counter()
        for doc in docs:
            ids = [index.get(w, UNK) for w in doc]
            for i, w in enumerate(ids):
                unigram[w] += 1
                if i >= 1:
                    bi[ids[i - 1] * v + w] += 1
                if i >= 2:
                    tri[(ids[i - 2] * v + ids[i - 1]) * v + w] += 1
        return cls(vocab, unigram, _Table.build(bi, v), _Table.build(tri, v), cache_weight)

    def ids(self, words: list[str]) -> np.ndarray:
        return np.fromiter((self.index.get(w, UNK) for w in words), dtype=np.int64, count=len(words))

    def ngram_probs(self, ids: np.ndarray, history: np.ndarray) -> np.ndarray:
        """p(w_t | w_{t-2}, w_{t-1}) for every position of `ids`, `history` being the tokens before."""
        v = len(self.vocab)
        full = np.concatenate([history[-2:], ids])
        offset = len(full) - len(ids)
        pos = np.arange(offset, len(full))
        w = full[pos]
        p = self._p_uni[w]
        has1 = pos >= 1
        prev1 = np.where(has1, full[np.maximum(pos - 1, 0)], 0)
        total, types = self.bigrams.context(prev1)
        c = self.bigrams.count(prev1 * v + w)
        p = np.where(has1 & (total > 0), (c + types * p) / np.maximum(total + types, 1), p)
        has2 = pos >= 2
        prev2 = np.where(has2, full[np.maximum(pos - 2, 0)], 0)
        ctx = prev2 * v + prev1
        total, types = self.trigrams.context(ctx)
        c = self.trigrams.count(ctx * v + w)
        return np.where(has2 & (total > 0), (c + types * p) / np.maximum(total + types, 1), p)

    def nll(self, window: list[str], context: list[str]) -> float:
        """Mean negative log-likelihood (nats per word) of `window` after `context`."""
        if not window:
            return float("nan")
        ids = self.ids(window)
        p_ngram = self.ngram_probs(ids, self.ids(context[-2:]))
        if self.cache_weight == 0.0:
            return float(-np.mean(np.log(p_ngram)))
        seen = Counter(context)
        cache_len = len(context)
        p_cache = np.zeros(len(window), dtype=np.float64)
        for t, word in enumerate(window):
            if cache_len:
                p_cache[t] = seen[word] / cache_len
            seen[word] += 1
            cache_len += 1
        lam = np.where(np.arange(len(window)) + len(context) > 0, self.cache_weight, 0.0)
        return float(-np.mean(np.log((1 - lam) * p_ngram + lam * p_cache)))

    def score_windows(self, windows: list[str], contexts: list[str | None]) -> np.ndarray:
        return np.array(
            [self.nll(lm_tokens(s), lm_tokens(c) if c else []) for s, c in zip(windows, contexts)], dtype=np.float64
        )

    def save(self, path: str | os.PathLike) -> None:
        buf = io.BytesIO()
        np.savez_compressed(
            buf,
            vocab=np.array(self.vocab, dtype=object).astype(str),
            unigram=self.unigram.astype(np.int64),
            cache_weight=np.array(self.cache_weight),
            **{
                f"{name}_{field}": getattr(table, field)
                for name, table in (("bi", self.bigrams), ("tri", self.trigrams))
                for field in ("keys", "counts", "ctx_keys", "ctx_totals", "ctx_types")
            },
        )
        with replacing(path) as tmp:
            tmp.write_bytes(buf.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike, cache_weight: float | None = None) -> "NgramLM":
        with np.load(path, allow_pickle=False) as z:
            tables = {
                name: _Table(
                    *(z[f"{name}_{field}"] for field in ("keys", "counts", "ctx_keys", "ctx_totals", "ctx_types"))
                )
                for name in ("bi", "tri")
            }
            weight = float(z["cache_weight"]) if cache_weight is None else cache_weight
            return cls(list(z["vocab"]), z["unigram"], tables["bi"], tables["tri"], weight)
