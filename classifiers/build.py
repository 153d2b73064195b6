"""Rebuild the shipped classifiers from real, permissively licensed text.

    python -m refinery.classifiers.build --data ../shared/data --out models/classifiers

Sources: the shared data folder (nltk corpora, the extraction benchmarks' pages, the SMS Spam
Collection), the Python documentation and standard library shipped with the interpreter, and the
registry extracts committed in data/classifiers/ (package READMEs, Sphinx theme strings, SPDX
license texts; `scripts/fetch_classifier_corpora.py` rewrites them). Every source and its license is written
into the model card beside the model.

quality: `hq` is edited prose of five domains and many languages (technical documentation,
books, law and government, speeches, news); `lq` is real low-quality web text (page chrome of
news, company and documentation sites, link lists, spam messages) and junk derived from the
`hq` text (`synthetic`: keyword lists, shuffled word salad, menu-like lines, repeated lines).
Line breaks are tokens: short lines tell page chrome from prose in any language. A web address
is one word (`fasttext_model.URL_WORD`).
safety: `spam` vs `ham`: the SMS Spam Collection (CC BY 4.0), with the `hq` prose and the standard
library's code as `ham` too, so that edited writing and code are not mistaken for spam for being
unlike text messages.
Every model is measured leave-one-domain-out (`generalization`): those figures come first in
its card. Documents, not chunks, are split by a hash of their id into train, tune and test.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from refinery.classifiers import corpora, generalization, synthetic
from refinery.classifiers.fasttext_model import FastTextClassifier, TrainParams, train, write_card
from refinery.classifiers.generalization import Example, split_of
from refinery.classifiers.metrics import classification_report, roc_auc
from refinery.pipeline.resources import package_root

EXTRACTS = package_root() / "data" / "classifiers"


@dataclass(frozen=True)
class Roots:
    data: Path  # the shared data folder
    extracts: Path = EXTRACTS  # the committed registry extracts


# (doc_id, lang, text), or (doc_id, lang, text, origin domain) for text derived from another domain's
Reader = Callable[[Roots], Iterator[tuple]]


@dataclass
class Source:
    name: str
    label: str
    domain: str
    license: str
    examples: Reader  # (doc_id, lang, chunk text)
    max_examples: int = 1500


@dataclass
class Recipe:
    name: str
    positive: str
    sources: list[Source]
    params: TrainParams = field(default_factory=TrainParams)
    # The classify stage's default threshold on P(positive): the card reports, per domain, the
    # share of examples above it.
    threshold: float = 0.5
    # Credit owed to the creators of CC BY training data, repeated in the model card.
    attribution: str | None = None
    # Times each train example of a label is written (fastText has no example weights).
    repeat: dict[str, int] = field(default_factory=dict)


def _chunked(reader: Reader, target: int, by_lines: bool = False) -> Reader:
    def examples(roots: Roots):
        for doc_id, lang, text in reader(roots):
            for chunk in corpora.chunks(text, target, by_lines=by_lines):
                yield doc_id, lang, chunk

    return examples


def _in(lang: str, reader: Callable[[Roots], Iterator[tuple[str, str]]]) -> Reader:
    """A reader of one language."""
    return lambda roots: ((doc_id, lang, text) for doc_id, text in reader(roots))


def _detected(reader: Callable[[Roots], Iterator[tuple[str, str]]]) -> Reader:
    """A reader of pages in many languages, each tagged by lid.176."""
    return lambda roots: ((doc_id, corpora.language_of(text), text) for doc_id, text in reader(roots))


def _extract(name: str) -> Reader:
    return lambda roots: corpora.extract_documents(roots.extracts, name)


UDHR_LANGUAGES = {
    "eng": "en", "cmn_hans": "zh", "cmn_hant": "zh", "jpn": "ja", "kor": "ko", "deu": "de", "fra": "fr",
    "spa": "es", "ita": "it", "por_PT": "pt", "rus": "ru", "arb": "ar", "hin": "hi", "tur": "tr", "pol": "pl",
    "nld": "nl", "vie": "vi", "ind": "id", "swe": "sv", "fin": "fi", "ukr": "uk", "ces": "cs", "heb": "he",
}  # fmt: skip


def _udhr(roots: Roots):
    for code, lang in UDHR_LANGUAGES.items():
        for doc_id, text in corpora.udhr(roots.data, code):
            yield doc_id, lang, text


def _genesis(roots: Roots, per_translation: int = 200):
    """The first `per_translation` chunks of every translation, so that each language has its share."""
    for name, lang in corpora.GENESIS_TRANSLATIONS.items():
        pieces = ((doc_id, chunk) for doc_id, text in corpora.genesis(roots.data, [name], parts=50)
                  for chunk in corpora.chunks(text, 1000))  # fmt: skip
        for _, (doc_id, chunk) in zip(range(per_translation), pieces):
            yield doc_id, lang, chunk


def _source_code(roots: Roots, per_module: int = 9):
    """The first `per_module` chunks of every standard-library module's code, so that every module
    has its share."""
    for doc_id, text in corpora.python_source_code():
        for chunk in corpora.chunks(text, 1000)[:per_module]:
            yield doc_id, "code", chunk


def _sms_groups(label: str, size: int) -> Reader:
    """Consecutive messages of one label and one split joined `size` at a time (a document-sized
    example), so that every message of a held-out group is held out by the safety model too."""

    def examples(roots: Roots):
        groups: dict[str, list[str]] = {}
        for doc_id, msg_label, text in corpora.sms(roots.data):
            if msg_label != label:
                continue
            group = groups.setdefault(split_of(doc_id), [])
            group.append(text)
            if len(group) == size:
                yield doc_id, "en", "\n".join(group)
                group.clear()

    return examples


def _sms_messages(label: str) -> Reader:
    def examples(roots: Roots):
        for doc_id, msg_label, text in corpora.sms(roots.data):
            if msg_label == label:
                yield doc_id, "en", text

    return examples


PUBLIC_DOMAIN = "public domain (nltk_data package metadata)"
PSF = "PSF-2.0: Python documentation (pydoc_data.topics of the interpreter that runs the build)"
PSF_CODE = "PSF-2.0: the standard library's modules (of the interpreter that runs the build)"
READMES = (
    "MIT, BSD-2-Clause, BSD-3-Clause or Apache-2.0, per package (data/classifiers/SOURCE.md): READMEs of"
    " PyPI and npm packages"
)
SPHINX = "BSD-2-Clause: Sphinx 9.0.4 translation catalogs (data/classifiers/SOURCE.md)"
SPDX = "CC0-1.0: spdx-license-list 6.12.0 (npm), the SPDX License List's license texts (data/classifiers/SOURCE.md)"
TRAFILATURA = (
    "Apache-2.0 (trafilatura repository, tests/evaldata.json and tests/eval pages); text of the third-party"
    " pages it archives for evaluation"
)
ARTICLES = (
    "MIT (article-extraction-benchmark repository); text of the third-party news pages it archives for evaluation"
)
DERIVED = "derived by refinery.classifiers.synthetic from the hq sources above (their licenses)"
SMS = (
    "CC BY 4.0: SMS Spam Collection v.1, T. A. Almeida and J. M. Gomez Hidalgo, UCI Machine Learning"
    " Repository, doi:10.24432/C5CC84 (copy from a GitHub mirror whose README says CC BY-NC 4.0; the"
    " creators' license at UCI is CC BY 4.0)"
)
SMS_ATTRIBUTION = (
    "Trained on the SMS Spam Collection v.1 by Tiago A. Almeida and Jose Maria Gomez Hidalgo"
    " (UCI Machine Learning Repository, https://doi.org/10.24432/C5CC84), licensed CC BY 4.0"
    " (https://creativecommons.org/licenses/by/4.0/). Almeida, Gomez Hidalgo and Yamakami,"
    " 'Contributions to the Study of SMS Spam Filtering: New Collection and Results', DocEng 2011."
    " The model, a derived work, holds the training vocabulary and learned vectors, not the messages."
)

# Edited prose, by domain: the quality model's `hq` and the safety model's extra `ham`.
PROSE = [
    Source("Python documentation (pydoc topics)", "hq", "technical documentation", PSF,
           _chunked(_in("en", lambda r: corpora.python_doc_topics()), 1000)),
    Source("package READMEs (PyPI, npm)", "hq", "technical documentation", READMES,
           _chunked(_extract("package_readmes"), 1000)),
    Source("nltk genesis (7 translations, 6 languages)", "hq", "books", PUBLIC_DOMAIN, _genesis),
    Source("nltk udhr2 (23 languages)", "hq", "law and government", PUBLIC_DOMAIN, _udhr),
    Source("SPDX license texts (OSI-approved)", "hq", "law and government", SPDX,
           _chunked(_extract("spdx_license_texts"), 1000), max_examples=600),
    Source("nltk inaugural", "hq", "speeches", PUBLIC_DOMAIN,
           _chunked(_in("en", lambda r: corpora.nltk_plaintext(r.data, "inaugural")), 1000), max_examples=600),
    Source("nltk state_union", "hq", "speeches", PUBLIC_DOMAIN,
           _chunked(_in("en", lambda r: corpora.nltk_plaintext(r.data, "state_union")), 1000), max_examples=600),
    Source("article-extraction-benchmark article bodies", "hq", "news", ARTICLES,
           _chunked(_detected(lambda r: corpora.article_bodies(r.data)), 1000), max_examples=800),
    Source("trafilatura eval main texts", "hq", "news", TRAFILATURA,
           _chunked(_detected(lambda r: corpora.trafilatura_main_texts(r.data)), 1000), max_examples=800),
]  # fmt: skip


DERIVED_STRIDE = 8  # one prose chunk in 8 per kind: every domain gives some of each kind


def _derived(kind: str, max_examples: int = 600) -> Source:
    """One `kind` derivation of every DERIVED_STRIDE-th prose chunk (a different one per kind), under
    the chunk's document id, so it falls on its source's side of the split."""
    offset = list(synthetic.DERIVATIONS).index(kind)
    derive = synthetic.DERIVATIONS[kind]

    def examples(roots: Roots):
        i = 0
        for source in PROSE:
            for j, (doc_id, lang, text) in enumerate(source.examples(roots)):  # type: ignore[misc]
                if j >= source.max_examples:
                    break
                if i % DERIVED_STRIDE == offset:
                    yield doc_id, lang, derive(text, synthetic.rng_for(f"{doc_id}#{i}", kind)), source.domain
                i += 1

    return Source(f"derived: {kind}", "lq", f"derived: {kind}", DERIVED, examples, max_examples)


JUNK = [
    Source("trafilatura eval boilerplate snippets", "lq", "web page chrome", TRAFILATURA,
           _chunked(_detected(lambda r: corpora.boilerplate(r.data)), 600, by_lines=True)),
    Source("trafilatura eval navigation link texts", "lq", "web page chrome", TRAFILATURA,
           _chunked(_detected(lambda r: corpora.navigation(r.data)), 600, by_lines=True)),
    Source("article-extraction-benchmark page links", "lq", "link lists", ARTICLES,
           _chunked(_detected(lambda r: corpora.article_page_links(r.data)), 600, by_lines=True), max_examples=800),
    Source("Sphinx theme strings (52 languages)", "lq", "documentation site chrome", SPHINX,
           _chunked(_extract("sphinx_theme_strings"), 300, by_lines=True)),
    Source("SMS Spam Collection (spam), 3 messages per example", "lq", "spam messages", SMS, _sms_groups("spam", 3)),
    *(_derived(kind) for kind in synthetic.DERIVATIONS),
]  # fmt: skip

RECIPES = {
    "quality": Recipe(
        "quality",
        positive="hq",
        sources=PROSE + JUNK,
        params=TrainParams(min_count=2, epoch=20, bucket=200_000),
        attribution=SMS_ATTRIBUTION,
    ),
    "safety": Recipe(
        "safety",
        positive="spam",
        sources=[
            Source("SMS Spam Collection (spam)", "spam", "text messages", SMS, _sms_messages("spam"), 10_000),
            Source("SMS Spam Collection (ham)", "ham", "text messages", SMS, _sms_messages("ham"), 10_000),
            *(Source(s.name, "ham", s.domain, s.license, s.examples, s.max_examples) for s in PROSE),
            # Code is not spam: without it, a model that never saw documentation takes its doctests
            # (digits, brackets, short tokens) for text-message short codes.
            Source(
                "Python standard library code (no docstrings or comments)", "ham", "source code", PSF_CODE, _source_code
            ),
        ],
        params=TrainParams(word_ngrams=2, epoch=25, min_count=1),
        # The model's own decision (P(spam) > P(ham)): no threshold is chosen on reported documents.
        threshold=0.5,
        attribution=SMS_ATTRIBUTION,
        # Spam is one message in eight of the text messages: written three times, more of it is
        # found at a threshold that flags as much unseen prose (BENCHMARKS.md).
        repeat={"spam": 3},
    ),
}


def is_test(doc_id: str) -> bool:
    return split_of(doc_id) == "test"


def collect(recipe: Recipe, roots: Roots) -> tuple[list[Example], dict]:
    """Every example of the recipe with its domain, language and split (train examples as many
    times as `recipe.repeat` says), and per-source counts."""
    examples: list[Example] = []
    counts: dict[str, dict] = {}
    for source in recipe.sources:
        mine: list[Example] = []
        for i, (doc_id, lang, text, *origin) in enumerate(source.examples(roots)):
            if i >= source.max_examples:
                break
            domain = source.domain
            mine.append(Example(text, source.label, source.name, domain, lang, split_of(doc_id), *(origin or [domain])))
        times = recipe.repeat.get(source.label, 1)
        examples.extend(e for e in mine for _ in range(times if e.split == "train" else 1))
        counts[source.name] = {
            "label": source.label,
            "domain": source.domain,
            "license": source.license,
            "languages": sorted({e.lang for e in mine}),
            **{split: sum(e.split == split for e in mine) for split in ("train", "tune", "test")},
        }
    return examples, counts


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


def out_of_domain_report(recipe: Recipe, examples: list[Example]) -> tuple[dict, generalization.OutOfDomain]:
    result = generalization.leave_one_domain_out(examples, recipe.positive, recipe.params)
    report = {
        "method": (
            "for each domain, a model trained on the train documents of every other domain scores the"
            " domain's train and test documents; AUC against the other label's test documents of the"
            " other domains (by_domain), and of all those out-of-domain scores within each language"
            " (by_language)"
        ),
        "by_domain": result.domain_auc,
        "by_language": generalization.auc_by_language(result, recipe.positive),
        f"share_above_{recipe.threshold:g}": generalization.pass_rates(result, result.scores > recipe.threshold),
    }
    return report, result


def build(name: str, roots: Roots, out: Path) -> dict:
    recipe = RECIPES[name]
    examples, counts = collect(recipe, roots)
    report, _ = out_of_domain_report(recipe, examples)
    model_path = out / f"{name}.ftz"
    model = train([(e.text, e.label) for e in examples if e.split == "train"], model_path, recipe.params)
    test = [e for e in examples if e.split == "test"]
    metrics = evaluate(model, [(e.text, e.label) for e in test], recipe.positive)
    metrics["by_source"] = {
        source.name: _accuracy(model, [(e.text, e.label) for e in test if e.source == source.name])
        for source in recipe.sources
    }
    card = {
        "model": model_path.name,
        "task": name,
        "leave_one_domain_out": report,
        "heldout": metrics,
        "labels": model.labels,
        "positive_label": recipe.positive,
        "sources": counts,
        "params": asdict(recipe.params),
        "rebuild": f"python -m refinery.classifiers.build --data DATA --out {out} --only {name}",
    }
    if recipe.attribution:
        card["attribution"] = recipe.attribution
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


def build_perplexity(roots: Roots, out: Path) -> dict:
    """The quality model's companions: a trigram model of the `hq` train documents, and
    `quality_score`, the regression of P(hq), perplexity and line punctuation fitted on every
    domain's documents as the models without that domain score them, with its default threshold;
    and the leave-one-domain-out figures of each signal and of the score."""
    from refinery.classifiers import perplexity, quality_score

    recipe = RECIPES["quality"]
    examples, _ = collect(recipe, roots)
    report, _, (score, cut) = quality_score.leave_one_domain_out(examples, recipe.positive, recipe.params)
    lm = perplexity.train([e.text for e in examples if e.split == "train" and e.label == "hq"])
    path = out / "perplexity.npz"
    lm.save(path)
    card = {
        "model": path.name,
        "task": "perplexity of a word trigram model of edited prose (Witten-Bell), beside quality.ftz",
        "leave_one_domain_out": report,
        "quality_score": {
            "formula": "sigmoid(coefficients . (features - mean) / scale + intercept)",
            **score.card(),
            "threshold": float(1 / (1 + np.exp(-cut))),
            "chosen_on": (
                "every domain's train and test documents as scored by the fastText and trigram models trained"
                f" without that domain: fitted there, and keeps {quality_score.PROSE_KEEP:.0%} of their hq text"
            ),
        },
        "sources": "the hq sources of quality.ftz.json (train split)",
        "vocab": len(lm.vocab),
        "rebuild": f"python -m refinery.classifiers.build --data DATA --out {out} --only perplexity",
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
    parser.add_argument("--extracts", default=str(EXTRACTS), help="folder with the committed registry extracts")
    parser.add_argument(
        "--only", choices=[*sorted(RECIPES), "ngram", "perplexity"], action="append", help="build only these models"
    )


def run(args) -> int:
    root, out = Path(args.data), Path(args.out)
    roots = Roots(root, Path(args.extracts))
    out.mkdir(parents=True, exist_ok=True)
    for name in args.only or [*sorted(RECIPES), "ngram", "perplexity"]:
        if name == "perplexity":
            card = build_perplexity(roots, out)
            worst = min(d["auc_quality_score"] for d in card["leave_one_domain_out"]["by_domain"].values())
            print(f"perplexity: quality_score leave-one-domain-out AUC >= {worst:.4f} -> {out / card['model']}")
            continue
        if name == "ngram":
            card = build_ngram(root, out)
            print(f"ngram: vocabulary {card['vocab']} -> {out / card['model']}")
            continue
        card = build(name, roots, out)
        held = card["heldout"]
        worst = min(d["auc"] for d in card["leave_one_domain_out"]["by_domain"].values())
        print(
            f"{name}: leave-one-domain-out AUC >= {worst:.4f}; in-domain accuracy {held['accuracy']:.4f},"
            f" auc {held.get('auc', float('nan')):.4f} on {held['n']} held-out examples -> {out / card['model']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
