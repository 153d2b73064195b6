"""A perplexity signal beside the fastText quality score (CCNet, Wenzek et al. 2020): how
predictable a text is under a word trigram model of edited prose. `quality_score` combines it
with fastText's P(hq) and the share of lines that end in punctuation.
"""

from __future__ import annotations

import os

import numpy as np

from refinery.classifiers.ngram import NgramLM, lm_tokens

VOCAB_SIZE = 50_000


class PerplexityModel:
    """Per-word perplexity under a trigram model (no cache: a text is judged on its own)."""

    def __init__(self, path: str | os.PathLike):
        self.lm = NgramLM.load(path, cache_weight=0.0)

    def perplexity(self, texts: list[str]) -> np.ndarray:
        """exp(mean negative log-likelihood per word) of each text; NaN for a text without words."""
        return perplexities(self.lm, texts)


def train(texts: list[str]) -> NgramLM:
    """The trigram model of `texts` that PerplexityModel loads."""
    return NgramLM.train(texts, vocab_size=VOCAB_SIZE, min_count=2, cache_weight=0.0)


def perplexities(lm: NgramLM, texts: list[str]) -> np.ndarray:
    return np.exp(lm.ngram_nll([lm_tokens(text) for text in texts]))


def log_perplexity(perplexity: np.ndarray) -> np.ndarray:
    """ln(perplexity), with a text without words (NaN) counted as the least fluent text can be:
    its perplexity is the vocabulary size."""
    return np.log(np.where(np.isnan(perplexity), VOCAB_SIZE, perplexity))
