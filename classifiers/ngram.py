"""A word trigram language model with a unigram cache, small enough to train on CPU in seconds.

The n-gram part (Witten-Bell interpolation down to an add-one unigram) sees only the last two
words, so by itself it cannot tell whether an earlier window helps. The cache (Kuhn & De Mori,
1990) can: it mixes in the distribution of the words already read, `p = (1-λ)·p_trigram +
λ·p_cache`. Scoring a window with the preceding window in the cache versus without it
measures how much that context predicts the window — the perplexity-coherence signal of the
long-context selection. Counts are stored as sorted int64 keys, looked up by binary search in
one compiled pass over a batch.
"""

from __future__ import annotations

import io
import os
import re
from collections import Counter
from typing import Iterable

import numba
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


@numba.njit(cache=True, nogil=True)
def _index(keys: np.ndarray, query: np.int64) -> int:
    """The position of `query` in the sorted `keys`, or -1."""
    i = np.searchsorted(keys, query)
    return i if i < len(keys) and keys[i] == query else -1


@numba.njit(cache=True, nogil=True)
def _count(keys: np.ndarray, counts: np.ndarray, query: np.int64) -> float:
    i = _index(keys, query)
    return float(counts[i]) if i >= 0 else 0.0


@numba.njit(cache=True, nogil=True)
def _prob(full, lo, pos, v, p_uni, bk, bc, bck, bct, bcy, tk, tc, tck, tct, tcy) -> float:
    """Witten-Bell p(full[pos] | the two before it, none before `lo`), down to add-one unigrams."""
    w = full[pos]
    p = p_uni[w]
    if pos - 1 >= lo:
        prev1 = full[pos - 1]
        j = _index(bck, prev1)
        if j >= 0 and bct[j] > 0:
            total, types = float(bct[j]), float(bcy[j])
            p = (_count(bk, bc, prev1 * v + w) + types * p) / max(total + types, 1.0)
        if pos - 2 >= lo:
            ctx = full[pos - 2] * v + prev1
            j = _index(tck, ctx)
            if j >= 0 and tct[j] > 0:
                total, types = float(tct[j]), float(tcy[j])
                p = (_count(tk, tc, ctx * v + w) + types * p) / max(total + types, 1.0)
    return p


@numba.njit(cache=True, nogil=True)
def _probs(full, lo, offset, v, p_uni, bk, bc, bck, bct, bcy, tk, tc, tck, tct, tcy) -> np.ndarray:
    out = np.empty(len(full) - offset, dtype=np.float64)
    for pos in range(offset, len(full)):
        out[pos - offset] = _prob(full, lo, pos, v, p_uni, bk, bc, bck, bct, bcy, tk, tc, tck, tct, tcy)
    return out


@numba.njit(cache=True, nogil=True)
def _mean_nll(flat, bounds, v, p_uni, bk, bc, bck, bct, bcy, tk, tc, tck, tct, tcy) -> np.ndarray:
    out = np.full(len(bounds) - 1, np.nan)
    for d in range(len(bounds) - 1):
        a, b = bounds[d], bounds[d + 1]
        if b > a:
            total = 0.0
            for pos in range(a, b):
                total -= np.log(_prob(flat, a, pos, v, p_uni, bk, bc, bck, bct, bcy, tk, tc, tck, tct, tcy))
            out[d] = total / (b - a)
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

    def _tables(self) -> tuple:
        b, t = self.bigrams, self.trigrams
        return (
            len(self.vocab), self._p_uni,
            b.keys, b.counts, b.ctx_keys, b.ctx_totals, b.ctx_types,
            t.keys, t.counts, t.ctx_keys, t.ctx_totals, t.ctx_types,
        )  # fmt: skip

    def ngram_probs(self, ids: np.ndarray, history: np.ndarray) -> np.ndarray:
        """p(w_t | w_{t-2}, w_{t-1}) for every position of `ids`, `history` being the tokens before."""
        full = np.concatenate([history[-2:], ids]).astype(np.int64)
        return _probs(full, 0, len(full) - len(ids), *self._tables())

    def ngram_nll(self, docs: list[list[str]]) -> np.ndarray:
        """Mean negative log-likelihood per word of each word list under the n-gram part alone, in
        one pass over the batch; NaN for an empty list."""
        ids = [self.ids(words) for words in docs]
        bounds = np.zeros(len(docs) + 1, dtype=np.int64)
        np.cumsum([len(i) for i in ids], out=bounds[1:])
        flat = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
        return _mean_nll(flat, bounds, *self._tables())

    def nll(self, window: list[str], context: list[str]) -> float:
        """Mean negative log-likelihood (nats per word) of `window` after `context`."""
        if not window:
            return float("nan")
        p_ngram = self.ngram_probs(self.ids(window), self.ids(context[-2:]))
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
