"""A perplexity signal beside the fastText quality score (CCNet, Wenzek et al. 2020): how
predictable a text is under a word trigram model of edited prose.

The two fail in opposite places. fastText reads a bag of words and n-grams, so it cannot tell
prose from the same words shuffled or listed; a language model reads word order, so it can, but
a text made of prose lines (repeated, or menus of short sentences) looks fluent to it. Their
combination, `quality_score = logit(P(hq)) - weight * ln(perplexity)`, is a column of the classify
stage (`perplexity: {}`, thresholded with `min_score`); the weight is chosen on the tune documents,
and the build reports each signal and the combination leave-one-domain-out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from refinery.classifiers import generalization
from refinery.classifiers.fasttext_model import TrainParams
from refinery.classifiers.generalization import Example
from refinery.classifiers.metrics import roc_auc
from refinery.classifiers.ngram import NgramLM, lm_tokens

# Weights of ln(perplexity) the build tries; 0 is fastText alone.
WEIGHTS = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0)
# The default threshold keeps this share of the tune documents' prose.
TUNE_KEEP = 0.975
VOCAB_SIZE = 50_000


class PerplexityModel:
    """Per-word perplexity under a trigram model (no cache: a text is judged on its own)."""

    def __init__(self, path: str | os.PathLike):
        self.lm = NgramLM.load(path, cache_weight=0.0)

    def perplexity(self, texts: list[str], max_chars: int | None = None) -> np.ndarray:
        """exp(mean negative log-likelihood per word) of each text's first `max_chars`
        characters; NaN for a text without words."""
        return perplexities(self.lm, texts, max_chars)


def train(texts: list[str]) -> NgramLM:
    """The trigram model of `texts` that PerplexityModel loads."""
    return NgramLM.train(texts, vocab_size=VOCAB_SIZE, min_count=2, cache_weight=0.0)


def perplexities(lm: NgramLM, texts: list[str], max_chars: int | None = None) -> np.ndarray:
    out = np.full(len(texts), np.nan, dtype=np.float64)
    for i, text in enumerate(texts):
        words = lm_tokens(text[:max_chars] if max_chars else text)
        if words:
            out[i] = np.exp(lm.nll(words, []))
    return out


def quality_score(p_positive: np.ndarray, perplexity: np.ndarray, weight: float) -> np.ndarray:
    """logit(P(positive)) - weight * ln(perplexity); a text without words scores as the least
    fluent text can (its perplexity counts as the vocabulary size)."""
    p = np.clip(p_positive.astype(np.float64), 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p)) - weight * np.log(_or_worst(perplexity))


def _or_worst(perplexity: np.ndarray) -> np.ndarray:
    """The perplexities, with that of a text without words counted as the vocabulary size."""
    return np.where(np.isnan(perplexity), VOCAB_SIZE, perplexity)


@dataclass
class _Scored:
    """One held-out domain: the out-of-domain models' P(positive) and perplexity of its own
    documents and of the other label's test documents, and of the tune documents they trained beside."""

    label: str
    n_inside: int
    langs: list[str]  # of the domain's own documents
    p: np.ndarray
    ppl: np.ndarray
    gold: np.ndarray
    tune_p: np.ndarray
    tune_ppl: np.ndarray
    tune_gold: np.ndarray


def _held_out_scores(examples: list[Example], positive: str, params: TrainParams) -> dict[str, _Scored]:
    scored = {}
    for domain, model in generalization.models_without_each_domain(examples, params):
        kept = [e for e in examples if e.split == "train" and domain not in (e.domain, e.origin)]
        lm = train([e.text for e in kept if e.label == positive])
        inside = [e for e in examples if e.domain == domain and e.split != "tune"]
        label = inside[0].label
        others = [e for e in examples if e.domain != domain and e.split == "test" and e.label != label]
        tune = [e for e in examples if e.split == "tune" and domain not in (e.domain, e.origin)]
        both = inside + others
        scored[domain] = _Scored(
            label,
            len(inside),
            [e.lang for e in inside],
            generalization.positive_scores(model, both, positive),
            perplexities(lm, [e.text for e in both]),
            np.array([e.label == positive for e in both]),
            generalization.positive_scores(model, tune, positive),
            perplexities(lm, [e.text for e in tune]),
            np.array([e.label == positive for e in tune]),
        )
    return scored


def leave_one_domain_out(examples: list[Example], positive: str, params: TrainParams) -> dict:
    """For each domain, a fastText model and a language model trained without it score it: AUC of
    P(positive), of -perplexity and of their combination per held-out domain; the weight that
    does best on the tune documents, and the default threshold (keeps TUNE_KEEP of the tune
    prose) with, per held-out domain, the share it keeps."""
    scored = _held_out_scores(examples, positive, params)

    def tune_auc(weight: float) -> float:
        aucs = [roc_auc(quality_score(s.tune_p, s.tune_ppl, weight), s.tune_gold) for s in scored.values()]
        return float(np.mean(aucs))

    weight = max(WEIGHTS, key=tune_auc)
    by_domain = {}
    for domain, s in scored.items():
        combined = quality_score(s.p, s.ppl, weight)
        cut = threshold(s.tune_p, s.tune_ppl, s.tune_gold, weight)
        by_domain[domain] = {
            "label": s.label,
            "n": s.n_inside,
            "auc_fasttext": roc_auc(s.p, s.gold),
            "auc_perplexity": roc_auc(-_or_worst(s.ppl), s.gold),
            "auc_combined": roc_auc(combined, s.gold),
            "share_kept": float(np.mean(combined[: s.n_inside] >= cut)),
        }
    return {
        "method": (
            "for each domain, a fastText model and a trigram model trained on the train documents of every"
            " other domain score the domain's train and test documents; AUC against the other label's test"
            " documents of the other domains; the weight maximises the mean AUC on the tune documents, and"
            f" the threshold keeps {TUNE_KEEP:.1%} of the tune documents' {positive} text"
        ),
        "weight": weight,
        "tune_auc_by_weight": {f"{w:g}": tune_auc(w) for w in WEIGHTS},
        "by_domain": by_domain,
        "by_language": _by_language(scored, weight),
    }


def _by_language(scored: dict[str, _Scored], weight: float, min_examples: int = 10) -> dict[str, dict]:
    """AUC of every document's combined score from the models that never saw its domain, within
    each language that has at least `min_examples` of both labels."""
    langs: list[str] = []
    scores: list[np.ndarray] = []
    gold: list[np.ndarray] = []
    for s in scored.values():
        langs += s.langs
        scores.append(quality_score(s.p[: s.n_inside], s.ppl[: s.n_inside], weight))
        gold.append(s.gold[: s.n_inside])
    all_scores, all_gold, all_langs = np.concatenate(scores), np.concatenate(gold), np.array(langs)
    out = {}
    for lang in sorted(set(langs)):
        rows = all_langs == lang
        positive = int(all_gold[rows].sum())
        if min(positive, int(rows.sum()) - positive) >= min_examples:
            out[lang] = {"n": int(rows.sum()), "positive": positive, "auc": roc_auc(all_scores[rows], all_gold[rows])}
    return out


def threshold(p_positive: np.ndarray, perplexity: np.ndarray, gold: np.ndarray, weight: float) -> float:
    """The score that keeps TUNE_KEEP of the positive texts given (the tune documents)."""
    return float(np.quantile(quality_score(p_positive, perplexity, weight)[gold], 1 - TUNE_KEEP))
