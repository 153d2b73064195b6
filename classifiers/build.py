"""Rebuild the shipped classifiers from the real text in the shared data folder.

    python -m refinery.classifiers.build --data ../shared/data --out models/classifiers

quality: reference-vs-raw (as GPT-3 and DCLM): edited prose (inaugural and State of the Union
addresses, hand-extracted news and blog article bodies) as `hq`; informal and low-quality text
(web forum posts and overheard quotes, chat rooms, SMS, page boilerplate) as `lq`.
safety: the SMS Spam Collection, `spam` vs `ham` (the only labeled unsafe-content set bundled;
point config at a toxicity or adult-content model of your own for those categories).
Documents, not chunks, are split 80/20 by a hash of their id, so held-out figures are honest.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from refinery.classifiers import corpora
from refinery.classifiers.fasttext_model import FastTextClassifier, TrainParams, params_dict, train, write_card
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


def _chunked(reader, target: int, by_lines: bool = False):
    def examples(root: Path):
        for doc_id, text in reader(root):
            for chunk in corpora.chunks(text, target, by_lines=by_lines):
                yield doc_id, chunk
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
RECIPES = {
    "quality": Recipe(
        "quality",
        positive="hq",
        sources=[
            Source("nltk inaugural", "hq", PUBLIC_DOMAIN, _chunked(lambda r: corpora.nltk_plaintext(r, "inaugural"), 1000)),
            Source("nltk state_union", "hq", PUBLIC_DOMAIN, _chunked(lambda r: corpora.nltk_plaintext(r, "state_union"), 1000)),
            Source("article-extraction-benchmark ground truth", "hq", "MIT (repo); article text from third-party news sites, kept for evaluation", _chunked(corpora.article_bodies, 1000)),
            Source("nltk webtext", "lq", "no license stated in the nltk_data package", _chunked(lambda r: corpora.nltk_plaintext(r, "webtext"), 1000, by_lines=True)),
            Source("nltk nps_chat", "lq", "non-commercial research and education use only (nltk_data package metadata)", _chunked(corpora.nps_chat, 600, by_lines=True)),
            Source("SMS Spam Collection", "lq", "CC BY 4.0 (UCI); the mirror says CC BY-NC 4.0", _sms_groups(None, 6)),
            Source("trafilatura eval boilerplate", "lq", "Apache-2.0 (repo); snippets of third-party web pages", _chunked(corpora.boilerplate, 600, by_lines=True)),
        ],
    ),
    "safety": Recipe(
        "safety",
        positive="spam",
        sources=[
            Source("SMS Spam Collection (spam)", "spam", "CC BY 4.0 (UCI); the mirror says CC BY-NC 4.0", _sms_messages("spam"), max_examples=10_000),
            Source("SMS Spam Collection (ham)", "ham", "CC BY 4.0 (UCI); the mirror says CC BY-NC 4.0", _sms_messages("ham"), max_examples=10_000),
        ],
        params=TrainParams(word_ngrams=2, epoch=25, min_count=1),
    ),
}


def is_test(doc_id: str) -> bool:
    return int(hashlib.blake2b(doc_id.encode(), digest_size=4).hexdigest(), 16) % TEST_SHARE == 0


def collect(recipe: Recipe, root: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]], dict]:
    """Train and test `(text, label)` pairs and per-source counts."""
    train_set: list[tuple[str, str]] = []
    test_set: list[tuple[str, str]] = []
    counts: dict[str, dict] = {}
    for source in recipe.sources:
        n_train = n_test = 0
        for i, (doc_id, text) in enumerate(source.examples(root)):
            if i >= source.max_examples:
                break
            if is_test(doc_id):
                test_set.append((text, source.label))
                n_test += 1
            else:
                train_set.append((text, source.label))
                n_train += 1
        counts[source.name] = {"label": source.label, "license": source.license, "train": n_train, "test": n_test}
    return train_set, test_set, counts


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


def build(name: str, root: Path, out: Path) -> dict:
    recipe = RECIPES[name]
    train_set, test_set, counts = collect(recipe, root)
    model_path = out / f"{name}.ftz"
    model = train(train_set, model_path, recipe.params)
    metrics = evaluate(model, test_set, recipe.positive)
    card = {
        "model": model_path.name,
        "task": name,
        "labels": model.labels,
        "positive_label": recipe.positive,
        "sources": counts,
        "params": params_dict(recipe.params),
        "heldout": metrics,
        "rebuild": f"python -m refinery.classifiers.build --data DATA --out {out} --only {name}",
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
        print(f"{name}: accuracy {held['accuracy']:.4f}, auc {held.get('auc', float('nan')):.4f} on {held['n']} held-out examples -> {out / card['model']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
