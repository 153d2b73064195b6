"""One quality score from three signals that fail in different places, and how it does on
domains it never saw.

- fastText's P(hq) reads a bag of words: it cannot tell prose from the same words shuffled or
  listed, nor spam from a message it has never seen the like of.
- The perplexity under a trigram model of edited prose (CCNet) reads word order, but a text of
  prose-like lines (repeated, or menus of short sentences) looks fluent to it.
- The share of lines that end in punctuation (FineWeb's line-punctuation signal) reads layout in
  any script: page chrome, link lists, keyword spam and menus are lines that stop without it.
  Unicode's Terminal_Punctuation counts, which ends a clause as well as a sentence (a comma, a
  semicolon, a colon, 、): prose set one clause per line (a preamble's "Whereas ...," clauses, a
  list after "provided that:") is prose. A line break before a lowercase letter continues the
  line, so hard-wrapped plain text (licenses, books, reference manuals) is read by its
  paragraphs, not by its 70-character lines.

`quality_score` is a logistic regression of the three (standardised); its card holds the
coefficients and the default threshold. It is fitted on out-of-domain features: every domain's
documents as scored by the fastText and trigram models trained without that domain. On the
domains they were trained on, fastText and the trigram model are sure of nearly every document,
and a regression fitted there trusts them (and a threshold set there is placed) as if every text
came from a known source; out of domain they are the weaker signals. The build reports each
signal and the score leave-one-domain-out, where the regression too is fitted without the
held-out domain's documents.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import regex

from refinery.classifiers import generalization
from refinery.classifiers.fasttext_model import TrainParams
from refinery.classifiers.fasttext_model import train as train_fasttext
from refinery.classifiers.generalization import Example
from refinery.classifiers.metrics import roc_auc
from refinery.classifiers.perplexity import log_perplexity, perplexities, train

FEATURES = ("logit_p_hq", "log_perplexity", "line_punctuation")
# The default threshold keeps this share of the prose the regression is fitted on.
PROSE_KEEP = 0.99
# L2 penalty of the regression (on standardised features; the intercept is not penalised).
L2 = 1.0
P_CLIP = 1e-4

# A line that ends a sentence or a clause: a Unicode Terminal_Punctuation character (a superset of
# Sentence_Terminal), then only closing quotes, closing brackets and spaces.
_ENDS_PUNCTUATED = regex.compile(r"\p{Terminal_Punctuation}[\p{Pe}\p{Pf}\"'\p{Zs}\t\r]*$", regex.M)
_NON_BLANK = regex.compile(r"^[\p{Zs}\t\r]*\S", regex.M)
# A line break inside a hard-wrapped paragraph: the next line goes on in lowercase.
_WRAPPED = regex.compile(r"\r?\n(?=[\p{Zs}\t]*\p{Ll})")


def line_punctuation(texts: list[str]) -> np.ndarray:
    """Per text, the share of its non-blank lines, hard-wrapped ones joined, that end a sentence or
    a clause (0 for a blank text)."""
    out = np.zeros(len(texts), dtype=np.float64)
    for i, text in enumerate(texts):
        text = _WRAPPED.sub(" ", text)
        lines = len(_NON_BLANK.findall(text))
        if lines:
            out[i] = len(_ENDS_PUNCTUATED.findall(text)) / lines
    return out


def features(p_hq: np.ndarray, perplexity: np.ndarray, punctuation: np.ndarray) -> np.ndarray:
    """The FEATURES matrix, one row per text."""
    p = np.clip(p_hq.astype(np.float64), P_CLIP, 1 - P_CLIP)
    return np.column_stack([np.log(p / (1 - p)), log_perplexity(perplexity), punctuation])


@dataclass(frozen=True)
class QualityScore:
    """P(good) = sigmoid(coefficients . (x - mean) / scale + intercept) over FEATURES."""

    mean: np.ndarray
    scale: np.ndarray
    coefficients: np.ndarray
    intercept: float

    @classmethod
    def fit(cls, x: np.ndarray, gold: np.ndarray) -> QualityScore:
        """L2-penalised logistic regression by Newton's method (a convex problem of 4 unknowns)."""
        mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
        z = np.column_stack([(x - mean) / scale, np.ones(len(x))])
        y = gold.astype(np.float64)
        penalty = L2 * np.diag([1.0] * x.shape[1] + [0.0])
        w = np.zeros(z.shape[1])
        for _ in range(100):
            p = 1 / (1 + np.exp(-(z @ w)))
            step = np.linalg.solve((z * (p * (1 - p))[:, None]).T @ z + penalty, z.T @ (p - y) + penalty @ w)
            w -= step
            if np.abs(step).max() < 1e-10:
                break
        return cls(mean, scale, w[:-1], float(w[-1]))

    def logit(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.scale) @ self.coefficients + self.intercept

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-self.logit(x)))

    def card(self) -> dict:
        return {
            "features": list(FEATURES),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "coefficients": self.coefficients.tolist(),
            "intercept": self.intercept,
        }

    @classmethod
    def from_card(cls, card: dict) -> QualityScore:
        if card.get("features") != list(FEATURES):
            raise ValueError(f"quality_score: the card's features {card.get('features')} are not {list(FEATURES)}")
        return cls(
            np.asarray(card["mean"], dtype=np.float64),
            np.asarray(card["scale"], dtype=np.float64),
            np.asarray(card["coefficients"], dtype=np.float64),
            float(card["intercept"]),
        )


def threshold(score: np.ndarray, gold: np.ndarray) -> float:
    """The score that keeps PROSE_KEEP of the positive texts given."""
    return float(np.quantile(score[gold], 1 - PROSE_KEEP))


@dataclass
class _Scored:
    """One held-out domain: FEATURES from the models that never saw it, of its own documents
    and of the other label's test documents."""

    label: str
    inside: list[Example]  # the domain's own train and test documents: the first rows of x
    x: np.ndarray
    gold: np.ndarray


def _features_of(model, lm, examples: list[Example], positive: str) -> np.ndarray:
    texts = [e.text for e in examples]
    p = generalization.positive_scores(model, examples, positive)
    return features(p, perplexities(lm, texts), line_punctuation(texts))


def _held_out(examples: list[Example], positive: str, params: TrainParams) -> dict[str, _Scored]:
    scored = {}
    for domain, model in generalization.models_without_each_domain(examples, params):
        kept = generalization.trained_on(examples, {domain})
        lm = train([e.text for e in kept if e.label == positive])
        inside = [e for e in examples if e.domain == domain and e.split != "tune"]
        label = inside[0].label
        others = [e for e in examples if e.domain != domain and e.split == "test" and e.label != label]
        scored[domain] = _Scored(
            label,
            inside,
            _features_of(model, lm, inside + others, positive),
            np.array([e.label == positive for e in inside + others]),
        )
    return scored


def fit_out_of_domain(scored: dict[str, _Scored], without: str | None = None) -> tuple[QualityScore, float]:
    """The regression, and its threshold on the logit, fitted on every domain's own documents as
    the models without that domain score them, the domain `without` left out."""
    rows = [s for domain, s in scored.items() if domain != without]
    x = np.concatenate([s.x[: len(s.inside)] for s in rows])
    gold = np.concatenate([s.gold[: len(s.inside)] for s in rows])
    score = QualityScore.fit(x, gold)
    return score, threshold(score.logit(x), gold)


def leave_one_domain_out(
    examples: list[Example], positive: str, params: TrainParams
) -> tuple[dict, generalization.OutOfDomain, tuple[QualityScore, float]]:
    """For each domain, fastText, the trigram model and the regression fitted without it score
    it: AUC of each signal and of quality_score against the other label's test documents, and the
    share of its documents the default threshold (PROSE_KEEP of the other domains' prose) keeps.
    Also every scored document's margin over that threshold (the logit minus the threshold; kept
    when >= 0), and the regression and threshold fitted on every domain (the shipped ones)."""
    scored = _held_out(examples, positive, params)
    by_domain = {}
    inside: list[Example] = []
    margins: list[np.ndarray] = []
    for domain, s in scored.items():
        score, cut = fit_out_of_domain(scored, without=domain)
        logit, n = score.logit(s.x), len(s.inside)
        margin = logit - cut
        by_domain[domain] = {
            "label": s.label,
            "n": n,
            "auc_fasttext": roc_auc(s.x[:, 0], s.gold),
            "auc_perplexity": roc_auc(-s.x[:, 1], s.gold),
            "auc_line_punctuation": roc_auc(s.x[:, 2], s.gold),
            "auc_quality_score": roc_auc(logit, s.gold),
            "share_kept": float(np.mean(margin[:n] >= 0)),
        }
        inside += s.inside
        margins.append(margin[:n])
    ood = generalization.OutOfDomain(inside, np.concatenate(margins), by_domain)
    report = {
        "method": (
            "for each domain, a fastText model and a trigram model trained on the train documents of every"
            " other domain score the domain's train and test documents; the regression and its threshold"
            " are fitted on the other domains' documents as scored by the models without each of them (those"
            " models saw the held-out domain; its own documents are never in the fit); AUC against the other"
            f" label's test documents of the other domains; the threshold keeps {PROSE_KEEP:.0%} of the"
            f" {positive} text it is fitted on; by_language: AUC of the margins over that threshold within"
            " each language"
        ),
        "by_domain": by_domain,
        "by_language": generalization.auc_by_language(ood, positive),
    }
    return report, ood, fit_out_of_domain(scored)


def fully_nested(examples: list[Example], positive: str, params: TrainParams, domain: str) -> dict:
    """`domain` held out with the regression fitted on features that never saw it either: each other
    domain's documents as scored by models trained without both (one more training per domain).
    What leave_one_domain_out's shortcut (those models saw `domain`) changes: AUC and share kept."""

    def scored_by_models_without(out: set[str], scored: list[Example]) -> np.ndarray:
        kept = generalization.trained_on(examples, out)
        with tempfile.TemporaryDirectory() as tmp:
            model = train_fasttext([(e.text, e.label) for e in kept], Path(tmp) / "m.ftz", params)
            return _features_of(model, train([e.text for e in kept if e.label == positive]), scored, positive)

    def own_documents(d: str) -> list[Example]:
        return [e for e in examples if e.domain == d and e.split != "tune"]

    labels = {e.label for e in examples}
    others = [  # those that can be left out beside `domain` with every label still trained on
        d
        for d in generalization.holdable_domains(examples)
        if d != domain and {e.label for e in generalization.trained_on(examples, {d, domain})} == labels
    ]
    x = np.concatenate([scored_by_models_without({domain, d}, own_documents(d)) for d in others])
    gold = np.array([e.label == positive for d in others for e in own_documents(d)])
    score = QualityScore.fit(x, gold)
    cut = threshold(score.logit(x), gold)
    inside = own_documents(domain)
    against = [e for e in examples if e.domain != domain and e.split == "test" and e.label != inside[0].label]
    logit = score.logit(scored_by_models_without({domain}, inside + against))
    return {
        "auc_quality_score": roc_auc(logit, [e.label == positive for e in inside + against]),
        "share_kept": float(np.mean(logit[: len(inside)] >= cut)),
    }
