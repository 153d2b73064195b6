"""Rebuild the shipped classifiers from the real text in the shared data folder.

    python -m refinery.classifiers.build --data ../shared/data --out models/classifiers

Everything a shipped model is trained on is public domain or permissively licensed; each
source's license is written into the model card beside the model.

quality: reference-vs-raw (as GPT-3 and DCLM). `hq`: public-domain edited prose (inaugural and
State of the Union addresses, the KJV and World English Bible Genesis, the English UDHR). `lq`:
the page chrome of the trafilatura evaluation pages (annotated boilerplate snippets, link texts of
navigation, header, footer and menu elements), English single-word and word-pair lists of the
lingua test data, and junk derived from the public-domain prose (`synthetic`: keyword lists,
shuffled word salad, menu-like short lines, repeated lines). Modern news articles and SMS
messages, never trained on, are scored as an out-of-domain check.
safety: the SMS Spam Collection (CC BY 4.0), `spam` vs `ham` (the only labeled unsafe-content
set bundled; point config at a toxicity or adult-content model of your own for those categories).
Documents, not chunks, are split 80/20 by a hash of their id, so held-out figures are honest.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from refinery.classifiers import corpora, synthetic
from refinery.classifiers.fasttext_model import FastTextClassifier, TrainParams, train, write_card
from refinery.classifiers.metrics import classification_report, roc_auc

TEST_SHARE = 5  # one document in five is held out


@dataclass
class Source:
    name: str
    label: str
    license: str
    examples: Callable[[Path], Iterator[tuple[str, str]]]  # (doc_id, chunk text)
    max_examples: int = 1500


@dataclass
class Recipe:
    name: str
    positive: str
    sources: list[Source]
    params: TrainParams = field(default_factory=TrainParams)
    # Scored after training, never trained on: how the model does on text unlike its sources.
    checks: list[Source] = field(default_factory=list)
    # Credit owed to the creators of CC BY training data, repeated in the model card.
    attribution: str | None = None


def _chunked(reader, target: int, by_lines: bool = False):
    def examples(root: Path):
        for doc_id, text in reader(root):
            for chunk in corpora.chunks(text, target, by_lines=by_lines):
                yield doc_id, chunk

    return examples


def _public_domain_prose(root: Path) -> Iterator[tuple[str, str]]:
    readers = (
        lambda r: corpora.nltk_plaintext(r, "inaugural"),
        lambda r: corpora.nltk_plaintext(r, "state_union"),
        corpora.genesis_english,
        corpora.udhr_english,
    )
    for reader in readers:
        yield from _chunked(reader, 1000)(root)


def _derived(kind: str):
    """One `kind` derivation of every fourth public-domain chunk (a different quarter per kind),
    under the chunk's document id."""
    offset = list(synthetic.DERIVATIONS).index(kind)
    derive = synthetic.DERIVATIONS[kind]

    def examples(root: Path):
        for i, (doc_id, text) in enumerate(_public_domain_prose(root)):
            if i % len(synthetic.DERIVATIONS) == offset:
                yield doc_id, derive(text, synthetic.rng_for(f"{doc_id}#{i}", kind))

    return examples


def _sms_groups(label: str | None, size: int):
    """Consecutive messages of one label joined `size` at a time (a document-sized example)."""

    def examples(root: Path):
        group: list[str] = []
        for doc_id, msg_label, text in corpora.sms(root):
            if label is not None and msg_label != label:
                continue
            group.append(text)
            if len(group) == size:
                yield doc_id, "\n".join(group)
                group = []

    return examples


def _sms_messages(label: str):
    def examples(root: Path):
        for doc_id, msg_label, text in corpora.sms(root):
            if msg_label == label:
                yield doc_id, text

    return examples


PUBLIC_DOMAIN = "public domain (nltk_data package metadata)"
TRAFILATURA = (
    "Apache-2.0 (trafilatura repository, tests/evaldata.json and tests/eval pages); short interface strings"
    " and link texts of the third-party pages it archives for evaluation"
)
LINGUA = (
    "Apache-2.0 (lingua-py repository, language-testdata); single words and two-word phrases"
    " (from the Leipzig Wortschatz corpora per the lingua README)"
)
DERIVED = "public domain: derived by refinery.classifiers.synthetic from the public-domain prose above"
SMS = (
    "CC BY 4.0: SMS Spam Collection v.1, T. A. Almeida and J. M. Gomez Hidalgo, UCI Machine Learning"
    " Repository, doi:10.24432/C5CC84 (copy from a GitHub mirror whose README says CC BY-NC 4.0; the"
    " creators' license at UCI is CC BY 4.0)"
)
ARTICLES = "MIT (article-extraction-benchmark repository); article text of third-party news sites, kept for evaluation"
RECIPES = {
    "quality": Recipe(
        "quality",
        positive="hq",
        sources=[
            Source(
                "nltk inaugural", "hq", PUBLIC_DOMAIN, _chunked(lambda r: corpora.nltk_plaintext(r, "inaugural"), 1000)
            ),
            Source(
                "nltk state_union",
                "hq",
                PUBLIC_DOMAIN,
                _chunked(lambda r: corpora.nltk_plaintext(r, "state_union"), 1000),
            ),
            Source("nltk genesis (English KJV and WEB)", "hq", PUBLIC_DOMAIN, _chunked(corpora.genesis_english, 1000)),
            Source("nltk udhr2 (English)", "hq", PUBLIC_DOMAIN, _chunked(corpora.udhr_english, 1000)),
            Source(
                "trafilatura eval boilerplate snippets",
                "lq",
                TRAFILATURA,
                _chunked(corpora.boilerplate, 600, by_lines=True),
            ),
            Source(
                "trafilatura eval navigation link texts",
                "lq",
                TRAFILATURA,
                _chunked(corpora.navigation, 600, by_lines=True),
            ),
            Source("lingua single words (en)", "lq", LINGUA, lambda r: corpora.lingua_lines(r, "single-words")),
            Source("lingua word pairs (en)", "lq", LINGUA, lambda r: corpora.lingua_lines(r, "word-pairs")),
            *(Source(f"derived: {kind}", "lq", DERIVED, _derived(kind)) for kind in synthetic.DERIVATIONS),
        ],
        checks=[
            Source(
                "article-extraction-benchmark article bodies", "hq", ARTICLES, _chunked(corpora.article_bodies, 1000)
            ),
            Source("SMS Spam Collection, 6 messages per example", "lq", SMS, _sms_groups(None, 6)),
        ],
    ),
    "safety": Recipe(
        "safety",
        positive="spam",
        sources=[
            Source("SMS Spam Collection (spam)", "spam", SMS, _sms_messages("spam"), max_examples=10_000),
            Source("SMS Spam Collection (ham)", "ham", SMS, _sms_messages("ham"), max_examples=10_000),
        ],
        params=TrainParams(word_ngrams=2, epoch=25, min_count=1),
        attribution=(
            "Trained on the SMS Spam Collection v.1 by Tiago A. Almeida and Jose Maria Gomez Hidalgo"
            " (UCI Machine Learning Repository, https://doi.org/10.24432/C5CC84), licensed CC BY 4.0"
            " (https://creativecommons.org/licenses/by/4.0/). Almeida, Gomez Hidalgo and Yamakami,"
            " 'Contributions to the Study of SMS Spam Filtering: New Collection and Results', DocEng 2011."
            " The model, a derived work, holds the training vocabulary and learned vectors, not the messages."
        ),
    ),
}


def is_test(doc_id: str) -> bool:
    return int(hashlib.blake2b(doc_id.encode(), digest_size=4).hexdigest(), 16) % TEST_SHARE == 0


def collect(recipe: Recipe, root: Path) -> tuple[list[tuple[str, str]], dict[str, list[tuple[str, str]]], dict]:
    """Train `(text, label)` pairs, held-out pairs per source, and per-source counts."""
    train_set: list[tuple[str, str]] = []
    test_sets: dict[str, list[tuple[str, str]]] = {}
    counts: dict[str, dict] = {}
    for source in recipe.sources:
        test = test_sets.setdefault(source.name, [])
        n_train = 0
        for i, (doc_id, text) in enumerate(source.examples(root)):
            if i >= source.max_examples:
                break
            if is_test(doc_id):
                test.append((text, source.label))
            else:
                train_set.append((text, source.label))
                n_train += 1
        counts[source.name] = {"label": source.label, "license": source.license, "train": n_train, "test": len(test)}
    return train_set, test_sets, counts


def evaluate(model: FastTextClassifier, examples: list[tuple[str, str]], positive: str | None = None) -> dict:
    texts = [t for t, _ in examples]
    gold = [label for _, label in examples]
    probs = model.predict_proba(texts)
    predicted = [model.labels[i] for i in probs.argmax(axis=1)] if texts else []
    report = classification_report(gold, predicted, model.labels)
    if positive in model.labels:
        column = probs[:, model.labels.index(positive)]
        report["auc"] = roc_auc(column, [g == positive for g in gold])
    return report


def _accuracy(model: FastTextClassifier, examples: list[tuple[str, str]]) -> dict:
    """Share of one source's examples given their source's label (its recall)."""
    predicted = model.predict([t for t, _ in examples])
    right = sum(p == label for p, (_, label) in zip(predicted, examples))
    return {"n": len(examples), "accuracy": right / len(examples) if examples else float("nan")}


def build(name: str, root: Path, out: Path) -> dict:
    recipe = RECIPES[name]
    train_set, test_sets, counts = collect(recipe, root)
    model_path = out / f"{name}.ftz"
    model = train(train_set, model_path, recipe.params)
    metrics = evaluate(model, [pair for pairs in test_sets.values() for pair in pairs], recipe.positive)
    metrics["by_source"] = {source: _accuracy(model, pairs) for source, pairs in test_sets.items()}
    card = {
        "model": model_path.name,
        "task": name,
        "labels": model.labels,
        "positive_label": recipe.positive,
        "sources": counts,
        "params": asdict(recipe.params),
        "heldout": metrics,
        "rebuild": f"python -m refinery.classifiers.build --data DATA --out {out} --only {name}",
    }
    if recipe.attribution:
        card["attribution"] = recipe.attribution
    if recipe.checks:
        card["out_of_domain"] = {
            source.name: {
                "label": source.label,
                "license": source.license,
                **_accuracy(model, [(t, source.label) for _, t in source.examples(root)][: source.max_examples]),
            }
            for source in recipe.checks
        }
    write_card(model_path, card)
    return card


def ngram_texts(root: Path) -> list[str]:
    """Training text of the coherence LM: the public-domain speeches outside the held-out split."""
    docs = list(corpora.nltk_plaintext(root, "inaugural")) + list(corpora.nltk_plaintext(root, "state_union"))
    return [text for doc_id, text in docs if not is_test(doc_id)]


def build_ngram(root: Path, out: Path) -> dict:
    from refinery.classifiers.ngram import NgramLM

    texts = ngram_texts(root)
    lm = NgramLM.train(texts)
    path = out / "coherence-ngram.npz"
    lm.save(path)
    card = {
        "model": path.name,
        "task": "coherence language model (word trigram, Witten-Bell, unigram cache)",
        "sources": {"nltk inaugural + state_union (train split)": {"license": PUBLIC_DOMAIN, "documents": len(texts)}},
        "vocab": len(lm.vocab),
        "cache_weight": lm.cache_weight,
        "rebuild": f"python -m refinery.classifiers.build --data DATA --out {out} --only ngram",
    }
    write_card(path, card)
    return card


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="../shared/data", help="folder with the bundled corpora")
    parser.add_argument("--out", default="models/classifiers")
    parser.add_argument("--only", choices=sorted(RECIPES) + ["ngram"], action="append", help="build only these models")


def run(args) -> int:
    root, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.only or sorted(RECIPES) + ["ngram"]:
        if name == "ngram":
            card = build_ngram(root, out)
            print(f"ngram: vocabulary {card['vocab']} -> {out / card['model']}")
            continue
        card = build(name, root, out)
        held = card["heldout"]
        print(
            f"{name}: accuracy {held['accuracy']:.4f}, auc {held.get('auc', float('nan')):.4f} on {held['n']} "
            f"held-out examples -> {out / card['model']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
