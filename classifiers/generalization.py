"""How a classifier does on text unlike anything it was trained on: leave-one-domain-out.

Every training example belongs to a domain (technical documentation, books, page chrome, ...).
For each domain, a model trained without it scores it: its AUC against the other label's
held-out examples says whether the model generalizes to a kind of text it never saw, which the
in-domain held-out figures cannot. Documents are split by a hash of their id (never by chunk)
into train, tune (where thresholds are chosen) and test; the figures reported here come from
the train and test documents of the held-out domain, never from the tune documents.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from refinery.classifiers.fasttext_model import FastTextClassifier, TrainParams, train
from refinery.classifiers.metrics import roc_auc

SPLIT_BUCKETS = 5  # one document in five is test, one in five tune, the rest train


def split_of(doc_id: str) -> str:
    bucket = int(hashlib.blake2b(doc_id.encode(), digest_size=4).hexdigest(), 16) % SPLIT_BUCKETS
    return "test" if bucket == 0 else "tune" if bucket == 1 else "train"


@dataclass(frozen=True)
class Example:
    text: str
    label: str
    source: str
    domain: str
    lang: str
    split: str
    # The domain whose text it was made from (junk derived from prose), else its own.
    origin: str


def trained_on(examples: list[Example], without: set[str]) -> list[Example]:
    """The train documents of every domain but `without`, and of no junk derived from those
    domains' text (which would teach their vocabulary)."""
    return [e for e in examples if e.split == "train" and not {e.domain, e.origin} & without]


def holdable_domains(examples: list[Example]) -> list[str]:
    """Domains whose removal still leaves every label in the training set."""
    labels = {e.label for e in examples}
    domains = sorted({e.domain for e in examples})
    return [d for d in domains if {e.label for e in trained_on(examples, {d})} == labels]


def models_without_each_domain(
    examples: list[Example], params: TrainParams
) -> Iterator[tuple[str, FastTextClassifier]]:
    """(domain, model trained on the train documents of every other domain), one at a time."""
    with tempfile.TemporaryDirectory() as tmp:
        for domain in holdable_domains(examples):
            pairs = [(e.text, e.label) for e in trained_on(examples, {domain})]
            yield domain, train(pairs, Path(tmp) / f"without-{len(domain)}.ftz", params)


def positive_scores(model: FastTextClassifier, examples: list[Example], positive: str) -> np.ndarray:
    if not examples:
        return np.zeros(0, dtype=np.float32)
    return model.predict_proba([e.text for e in examples])[:, model.labels.index(positive)]


@dataclass
class OutOfDomain:
    """Each scored example's P(positive) from the model that never saw its domain, and each held-out
    domain's AUC against the other label's test documents (scored by the same model)."""

    examples: list[Example]
    scores: np.ndarray
    domain_auc: dict[str, dict]


def leave_one_domain_out(examples: list[Example], positive: str, params: TrainParams) -> OutOfDomain:
    scored: list[Example] = []
    scores: list[np.ndarray] = []
    domain_auc: dict[str, dict] = {}
    for domain, model in models_without_each_domain(examples, params):
        inside = [e for e in examples if e.domain == domain]
        label = inside[0].label
        others = [e for e in examples if e.domain != domain and e.split == "test" and e.label != label]
        reported = [e for e in inside if e.split != "tune"]
        mine, theirs = positive_scores(model, inside, positive), positive_scores(model, others, positive)
        mine_reported = mine[[e.split != "tune" for e in inside]]
        auc = roc_auc(
            np.concatenate([mine_reported, theirs]),
            [label == positive] * len(reported) + [label != positive] * len(others),
        )
        domain_auc[domain] = {"label": label, "n": len(reported), "auc": auc}
        scored.extend(inside)
        scores.append(mine)
    return OutOfDomain(scored, np.concatenate(scores) if scores else np.zeros(0), domain_auc)


def auc_by_language(result: OutOfDomain, positive: str, min_examples: int = 10) -> dict[str, dict]:
    """AUC of the out-of-domain scores within each language that has both labels (train and
    test documents only)."""
    out: dict[str, dict] = {}
    reported = [i for i, e in enumerate(result.examples) if e.split != "tune"]
    for lang in sorted({result.examples[i].lang for i in reported}):
        rows = [i for i in reported if result.examples[i].lang == lang]
        gold = [result.examples[i].label == positive for i in rows]
        if min(sum(gold), len(gold) - sum(gold)) >= min_examples:
            out[lang] = {"n": len(rows), "positive": sum(gold), "auc": roc_auc(result.scores[rows], gold)}
    return out


def pass_rates(result: OutOfDomain, passes: np.ndarray, split: str | None = None) -> dict[str, float]:
    """Per domain, the share of its examples (of `split`, else of train and test) for which
    `passes` (a mask aligned with result.examples) holds."""
    rates: dict[str, float] = {}
    for domain in sorted({e.domain for e in result.examples}):
        rows = [
            i
            for i, e in enumerate(result.examples)
            if e.domain == domain and (e.split == split if split else e.split != "tune")
        ]
        if rows:
            rates[domain] = float(np.mean(passes[rows]))
    return rates
