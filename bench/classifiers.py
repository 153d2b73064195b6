"""Classifier benchmarks.

Generalization (`--generalization`): the shipped recipes trained leave-one-domain-out. Prints the
AUC of fastText's P(hq), the perplexity, line punctuation and `quality_score` per held-out domain,
the score's AUC per language, the share of each domain's test documents kept and dropped at the
demo's thresholds (quality_score and safety together, each model never having seen the domain),
the safety model's false-positive rate per prose domain and its spam recall (held-out messages).
Thresholds are read from conf/demo.yaml.

    python bench/classifiers.py --data ../shared/data --generalization

Word blocklist (`--blocklist`, also the end of `--generalization`): the share of each prose domain's
chunks that the default word blocklist drops, for each `min_distinct` on the train and tune
documents (where the default is chosen) and at the default on the test documents; and what it does
on real explicit text (SMS spam messages with a listed word, the pages of a real crawl).

    python bench/classifiers.py --data ../shared/data --blocklist

Throughput (default): the `classify` stage vs datatrove's FastTextClassifierFilter, same
documents, same model (the shipped quality.ftz), one process, one run; prints docs/s and the ratio,
and what the demo's quality_score gate (perplexity and line punctuation beside fastText) costs.
Documents: the extraction benchmark's hand-extracted article bodies and State of the Union
chunks (real text, 1-10 KB each). datatrove is a benchmark-only dependency (`pip install datatrove`).

    python bench/classifiers.py --data ../shared/data [--repeat 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import yaml

from refinery.classifiers import build, corpora, generalization, quality_score
from refinery.classifiers.blocklist import WordBlocklist
from refinery.classifiers.fasttext_model import FastTextClassifier, train
from refinery.pipeline.config import InputConfig
from refinery.pipeline.readers import read_warc
from refinery.pipeline.resources import package_root
from refinery.pipeline.stage import run_map_stage
from refinery.stages.classify import Classify, ClassifyParams, WordSpec
from refinery.stages.extract import Extract, ExtractParams

MODEL = package_root() / "models" / "classifiers" / "quality.ftz"
DEMO = package_root() / "conf" / "demo.yaml"


def demo_max_spam(path: Path = DEMO) -> float:
    """The safety threshold of the demo's classify stage, which must gate on the card's quality_score."""
    stage = next(s for s in yaml.safe_load(path.read_text())["stages"] if s["stage"] == "classify")
    if stage["perplexity"].get("min_score") != "card" or stage["classifiers"]["quality"].get("min"):
        raise SystemExit(f"{path}: the report assumes the demo keeps quality_score >= the card's threshold")
    return stage["classifiers"]["safety"]["max"]["spam"]


def _table(header: list[str], rows: list[list]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for row in rows:
        print("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row) + " |")
    print()


def generalization_report(roots: build.Roots) -> int:
    split = "test"  # the documents the rates are read on
    quality, safety = build.RECIPES["quality"], build.RECIPES["safety"]
    max_spam = demo_max_spam()
    q_examples, _ = build.collect(quality, roots)
    s_examples, _ = build.collect(safety, roots)
    report, ood, _ = quality_score.leave_one_domain_out(q_examples, quality.positive, quality.params)
    print("## quality: leave-one-domain-out AUC (held-out domain vs the other label's test documents)\n")
    signals = ["fasttext", "perplexity", "line_punctuation", "quality_score"]
    _table(
        ["held-out domain", "label", "documents", *signals, "kept at the threshold"],
        [
            [d, v["label"], v["n"], *(v[f"auc_{k}"] for k in signals), v["share_kept"]]
            for d, v in sorted(report["by_domain"].items(), key=lambda kv: kv[1]["auc_quality_score"])
        ],
    )
    print("## quality_score: out-of-domain AUC per language (every document scored by models without its domain)\n")
    _table(
        ["language", "documents", "hq", "AUC"],
        [[k, v["n"], v["positive"], v["auc"]] for k, v in report["by_language"].items()],
    )

    # P(spam) of every quality example from a safety model that never saw its domain's prose; the
    # junk domains were never safety training data, and spam groups share the messages' split.
    spam = np.full(len(ood.examples), np.nan, dtype=np.float32)
    for domain, model in generalization.models_without_each_domain(s_examples, safety.params):
        rows = [i for i, e in enumerate(ood.examples) if e.domain == domain]
        spam[rows] = generalization.positive_scores(model, [ood.examples[i] for i in rows], safety.positive)
    with tempfile.TemporaryDirectory() as tmp:
        full = train([(e.text, e.label) for e in s_examples if e.split == "train"], Path(tmp) / "s.ftz", safety.params)
        rest = np.flatnonzero(np.isnan(spam))
        spam[rest] = generalization.positive_scores(full, [ood.examples[i] for i in rest], safety.positive)
        held_spam = [e for e in s_examples if e.split == split and e.label == safety.positive]
        recall = float(np.mean(generalization.positive_scores(full, held_spam, safety.positive) > max_spam))
    keep = (ood.scores >= 0) & (spam <= max_spam)
    kept = generalization.pass_rates(ood, keep, split)
    quality_kept = generalization.pass_rates(ood, ood.scores >= 0, split)
    flagged = generalization.pass_rates(ood, spam > max_spam, split)
    print(f"## demo thresholds (quality_score at its threshold, safety max spam {max_spam:g}), {split} documents\n")
    rows = []
    for domain in sorted(kept, key=lambda d: (ood.domain_auc[d]["label"] != "hq", d)):
        good = ood.domain_auc[domain]["label"] == "hq"
        n = sum(e.domain == domain and e.split == split for e in ood.examples)
        share = kept[domain] if good else 1 - kept[domain]
        rows.append([domain, "hq: kept" if good else "lq: dropped", n, share, quality_kept[domain], flagged[domain]])
    _table(["domain", "goal", "documents", "share (both models)", "quality_score kept", "P(spam) > max"], rows)
    print(f"safety spam recall at {max_spam:g}: {recall:.3f} of {len(held_spam)} held-out spam messages ({split})\n")
    blocklist_report(q_examples, roots)
    return 0


# The word blocklist may drop at most this share of clean prose chunks of any domain.
MAX_PROSE_DROPPED = 0.005


def blocklist_report(examples: list[generalization.Example], roots: build.Roots) -> None:
    """The classify stage's default word blocklist on clean prose and on real explicit text.
    `min_distinct` is chosen on the train and tune documents (the smallest that drops at most
    MAX_PROSE_DROPPED of every prose domain's chunks); the test documents are read after."""
    spec = WordSpec()
    words = WordBlocklist(package_root() / spec.path, spec.languages)
    prose = [(e, words.hits(e.text, e.lang)) for e in examples if e.label == "hq" and e.lang in spec.languages]
    domains = sorted({e.domain for e, _ in prose})

    def dropped(min_distinct: int, splits: tuple[str, ...]) -> list[float]:
        rule = spec.model_copy(update={"min_distinct": min_distinct})
        return [
            float(np.mean([rule.fails(h) for e, h in prose if e.domain == d and e.split in splits])) for d in domains
        ]

    print(
        f"## word blocklist ({', '.join(spec.languages)}; drop above {spec.max_rate:g} hits per word"
        " with at least min_distinct different listed words)\n"
    )
    choice = {k: dropped(k, ("train", "tune")) for k in range(1, 6)}
    _table(["min_distinct", *domains], [[k, *v] for k, v in choice.items()])
    chosen = min((k for k, v in choice.items() if max(v) <= MAX_PROSE_DROPPED), default=None)
    print(
        f"chosen on the train and tune documents (at most {MAX_PROSE_DROPPED:.1%} of every domain): {chosen};"
        f" the default: {spec.min_distinct}\n"
    )
    counts = [sum(e.domain == d and e.split == "test" for e, _ in prose) for d in domains]
    now, before = dropped(spec.min_distinct, ("test",)), dropped(1, ("test",))
    _table(
        ["prose domain (test documents)", "chunks", "dropped", "dropped with min_distinct 1"],
        [list(row) for row in zip(domains, counts, now, before)],
    )
    found: Counter[str] = Counter()
    for e, h in prose:
        pattern = words.pattern(e.lang)
        if h.count and pattern is not None:
            found.update(pattern.findall(e.text.lower()))
    print("most frequent hits in prose: " + ", ".join(f"{w} ({n})" for w, n in found.most_common(12)) + "\n")

    spam = [h for _, label, text in corpora.sms(roots.data) if label == "spam" and (h := words.hits(text, "en")).count]
    print(
        f"SMS spam messages with a listed word: {len(spam)}, dropped {np.mean([spec.fails(h) for h in spam]):.3f}"
        " (a text message is 20-30 words: one listed word is a rate of 3-5%, one different word)"
    )
    for url, text in crawled_pages(roots.data / "resiliparse_warc" / "warcfile.warc.gz"):
        h = words.hits(text, "zh" if re.search(r"[\u4e00-\u9fff]", text) else "en")
        if h.count:
            print(
                f"- {url}: {h.count} hits, {h.distinct} different, rate {h.rate:.4f}:"
                f" {'dropped' if spec.fails(h) else 'kept'}"
            )
    print()


def crawled_pages(path: Path) -> list[tuple[str, str]]:
    """(url, text) of a WARC's pages as the pipeline's reader and extract stage give them."""
    cfg = InputConfig(paths=[str(path)], format="warc")
    stage = Extract(ExtractParams())
    stage.setup()
    pages: list[tuple[str, str]] = []
    for batch, _ in read_warc(str(path), cfg):
        out, _ = run_map_stage(stage, batch)
        pages += zip(out.column("url").to_pylist(), out.column("text").to_pylist())
    return pages


def documents(root: Path) -> list[str]:
    texts = [text for _, text in corpora.article_bodies(root)]
    for _, speech in corpora.nltk_plaintext(root, "state_union"):
        texts.extend(corpora.chunks(speech, 4000))
    return texts


class Clock:
    """Wall and process CPU time of a block (CPU time is steadier on a shared machine)."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def _stage(config: dict) -> Classify:
    """The classify stage with `config`, no domain or word blocklist, checked and set up."""
    params = ClassifyParams.model_validate({**config, "domains": None, "words": None})
    stage = Classify(Classify.check_params(params, MODEL.parent))
    stage.setup()
    return stage


def refinery_stage() -> Classify:
    return _stage({"classifiers": {"quality": {"path": str(MODEL), "min": {"hq": 0.5}}}})


def score_stage() -> Classify:
    """The stage as the demo gates it: quality_score (P(hq), perplexity, line punctuation) at the
    card's threshold; what the two extra signals cost beside fastText alone."""
    return _stage(
        {
            "classifiers": {"quality": {"path": str(MODEL)}},
            "perplexity": {"path": str(MODEL.with_name("perplexity.npz")), "min_score": "card"},
        }
    )


def run_refinery(stage: Classify, texts: list[str], batch_size: int) -> tuple[Clock, int, np.ndarray]:
    # Input batches are built before timing, as datatrove's Documents are.
    batches = [
        pa.RecordBatch.from_pydict(
            {
                "id": [str(j) for j in range(i, i + batch_size)][: len(texts) - i],
                "text": pa.array(texts[i : i + batch_size], pa.large_string()),
            }
        )
        for i in range(0, len(texts), batch_size)
    ]
    kept: list[pa.RecordBatch] = []
    with Clock() as clock:
        for batch in batches:
            out, _ = run_map_stage(stage, batch)
            kept.append(out)
    return (
        clock,
        sum(b.num_rows for b in kept),
        np.concatenate([b.column("id").to_numpy(zero_copy_only=False) for b in kept]),
    )


def datatrove_filter():
    from datatrove.pipeline.filters import FastTextClassifierFilter

    filt = FastTextClassifierFilter(str(MODEL), keep_labels=[("hq", 0.5)], newline_replacement=" ")
    _ = filt.model  # load outside the timed loop, as the stage's setup() is
    return filt


def run_datatrove(filt, texts: list[str]) -> tuple[Clock, int]:
    from datatrove.data import Document

    docs = [Document(text=t, id=str(i)) for i, t in enumerate(texts)]
    with Clock() as clock:
        kept = sum(1 for _ in filt.run(iter(docs)))
    return clock, kept


def reference_kept(texts: list[str]) -> np.ndarray:
    """Ids the stage must keep: P(hq) >= 0.5 with each text prepared by the per-document Python
    `prepare` (the model's training preprocessing)."""
    model = FastTextClassifier(MODEL)
    hq = model.predict_proba(texts)[:, model.labels.index("hq")]
    return np.array([str(i) for i in np.flatnonzero(hq >= 0.5)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(package_root().parent / "shared" / "data"))
    parser.add_argument("--repeat", type=int, default=3, help="copies of the document set")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, help="alternating timed runs of each; the fastest counts")
    parser.add_argument("--generalization", action="store_true", help="leave-one-domain-out figures instead")
    parser.add_argument("--blocklist", action="store_true", help="only the word blocklist's figures")
    parser.add_argument(
        "--nested", metavar="DOMAIN", action="append", help="quality_score on DOMAIN with the regression fully nested"
    )
    args = parser.parse_args(argv)
    roots = build.Roots(Path(args.data))
    if args.generalization:
        return generalization_report(roots)
    if args.nested:
        recipe = build.RECIPES["quality"]
        examples, _ = build.collect(recipe, roots)
        for domain in args.nested:
            print(domain, quality_score.fully_nested(examples, recipe.positive, recipe.params, domain))
        return 0
    if args.blocklist:
        blocklist_report(build.collect(build.RECIPES["quality"], roots)[0], roots)
        return 0
    texts = documents(Path(args.data)) * args.repeat
    mb = sum(len(t.encode()) for t in texts) / 1e6
    stage, scored, filt = refinery_stage(), score_stage(), datatrove_filter()
    ours_runs, theirs_runs, scored_runs = [], [], []
    for _ in range(args.rounds):
        ours_runs.append(run_refinery(stage, texts, args.batch_size))
        theirs_runs.append(run_datatrove(filt, texts))
        scored_runs.append(run_refinery(scored, texts, args.batch_size))
    ours, ours_kept, kept_ids = ours_runs[0]
    theirs, theirs_kept = theirs_runs[0]
    ours.wall, ours.cpu = min(r[0].wall for r in ours_runs), min(r[0].cpu for r in ours_runs)
    theirs.wall, theirs.cpu = min(r[0].wall for r in theirs_runs), min(r[0].cpu for r in theirs_runs)
    same = np.array_equal(np.sort(kept_ids), np.sort(reference_kept(texts)))
    print(f"documents: {len(texts)} ({mb:.1f} MB)")
    for name, clock, kept in (
        ("refinery classify", ours, ours_kept),
        ("datatrove FastTextClassifierFilter", theirs, theirs_kept),
    ):
        print(
            f"{name:36s} {len(texts) / clock.wall:6.0f} docs/s  {mb / clock.wall:5.2f} MB/s  "
            f"(CPU {clock.cpu:.2f} s)  kept {kept}"
        )
    print(f"refinery keeps exactly the documents of per-document Python preparation: {same}")
    print(f"ratio refinery/datatrove: {theirs.wall / ours.wall:.2f}x wall, {theirs.cpu / ours.cpu:.2f}x CPU")
    score, score_kept = min((r[0] for r in scored_runs), key=lambda c: c.cpu), scored_runs[0][1]
    print(
        f"refinery classify, quality_score gate (the demo's): {len(texts) / score.wall:.0f} docs/s,"
        f" {mb / score.wall:.2f} MB/s (CPU {score.cpu:.2f} s), kept {score_kept};"
        f" {score.cpu / ours.cpu:.1f}x the CPU of fastText alone"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
