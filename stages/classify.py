"""Quality and safety classification (InternLM2 §3.1.4): domain blocklist, word blocklist and
fastText classifiers, each label's probability kept as a score column.

Keep rules are thresholds on those columns (`min`/`max` per label), so `annotate_only` runs
can be re-thresholded later without scoring again. Models and lists are file paths; the
defaults are the small ones the project ships and rebuilds (`refinery classifiers build`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from refinery.classifiers.blocklist import DomainBlocklist, Hits, WordBlocklist
from refinery.classifiers.fasttext_model import prepare_column
from refinery.pipeline.core import Strict
from refinery.pipeline.resources import resolve_path
from refinery.pipeline.stage import MapStage, StageParams, Verdict, set_column
from refinery.pipeline.stats import HistogramSpec


class ClassifierSpec(Strict):
    path: str
    # Keep a document only if P(label) >= min[label] and P(label) <= max[label].
    min: dict[str, float] = {}
    max: dict[str, float] = {}
    # fastText reads only the first characters: long documents cost no more than large ones.
    max_chars: int = Field(default=20_000, gt=0)


class DomainSpec(Strict):
    path: str = "blocklists/ut1"
    categories: list[str] = []


class WordSpec(Strict):
    path: str = "conf/rules/badwords"
    languages: list[str] = ["en", "zh"]
    # A document fails when it holds at least min_distinct different listed words and its hits
    # exceed max_count or its hit rate exceeds max_rate (hits per word; per character for
    # zh/ja/th). C4 drops on any hit (min_distinct: 1, max_count: 0). The default asks for three
    # different words, densely: clean prose uses one or two of them in context, a historical
    # speech "intercourse" and "domination", a court report "rape" and "sexual" (BENCHMARKS.md).
    min_distinct: int = Field(default=3, ge=1)
    max_count: int | None = None
    max_rate: float | None = Field(default=0.005, ge=0)
    lang_column: str = "lang"
    default_language: str = "en"

    def fails(self, hits: Hits) -> bool:
        """Whether a document with these hits is dropped."""
        too_many = (self.max_count is not None and hits.count > self.max_count) or (
            self.max_rate is not None and hits.rate > self.max_rate
        )
        return too_many and hits.distinct >= self.min_distinct


class PerplexitySpec(Strict):
    """CCNet-style perplexity under a trigram model of edited prose (`refinery.classifiers.perplexity`),
    a `perplexity` column; with `score_label`'s classifier also `quality_score`
    (`refinery.classifiers.quality_score`), the model card's regression of that P, the perplexity
    and the share of lines that end in punctuation: P(good prose), judged by the three together."""

    path: str = "models/classifiers/perplexity.npz"
    max_chars: int = Field(default=20_000, gt=0)
    # Drop a document whose perplexity is above `max` (None: no limit).
    max: float | None = Field(default=None, gt=0)
    # The score column combined with the perplexity (None: no quality_score).
    score_label: str | None = "quality_hq"
    # Keep a document only if quality_score >= min_score; "card": the model card's threshold.
    min_score: Annotated[float, Field(ge=0, le=1)] | Literal["card"] | None = None


def _default_classifiers() -> dict[str, ClassifierSpec]:
    return {
        "quality": ClassifierSpec(path="models/classifiers/quality.ftz", min={"hq": 0.5}),
        "safety": ClassifierSpec(path="models/classifiers/safety.ftz", max={"spam": 0.5}),
    }


class ClassifyParams(StageParams):
    classifiers: dict[str, ClassifierSpec] = Field(default_factory=_default_classifiers)
    domains: DomainSpec | None = DomainSpec()
    words: WordSpec | None = WordSpec()
    perplexity: PerplexitySpec | None = None

    @model_validator(mode="after")
    def _thresholds(self):
        for name, spec in self.classifiers.items():
            for label, value in {**spec.min, **spec.max}.items():
                if not 0.0 <= value <= 1.0:
                    raise ValueError(f"classifiers.{name}: threshold for {label!r} must be in [0, 1]")
        return self


def _checked_perplexity(spec: PerplexitySpec, base: Path, columns: set[str]) -> PerplexitySpec:
    """The spec with its model's path resolved and the card's threshold filled in."""
    path = resolve_path(spec.path, base)
    if not path.is_file():
        raise ValueError(f"perplexity.path: no such file {path}")
    update: dict = {"path": str(path)}
    if spec.score_label is not None:
        if spec.score_label not in columns:
            raise ValueError(
                f"perplexity.score_label: no classifier column {spec.score_label!r}"
                f" (have: {', '.join(sorted(columns))})"
            )
        card = _score_card(path)
        if spec.min_score == "card":
            update["min_score"] = float(card["threshold"])
    elif spec.min_score is not None:
        raise ValueError("perplexity.min_score needs a score_label")
    return spec.model_copy(update=update)


def _score_card(path: Path) -> dict:
    """The `quality_score` entry of the perplexity model's card, checked to load."""
    from refinery.classifiers.quality_score import QualityScore

    card_path = Path(f"{path}.json")
    if not card_path.is_file():
        raise ValueError(f"perplexity: {card_path} (the model card) is needed for quality_score")
    card = json.loads(card_path.read_text())["quality_score"]
    QualityScore.from_card(card)
    return card


def _model_labels(path: Path) -> list[str]:
    from refinery.classifiers.fasttext_model import FastTextClassifier

    return FastTextClassifier(path).labels


class Classify(MapStage):
    kind = "classify"
    Params = ClassifyParams
    uses_model = True

    def __init__(self, params: ClassifyParams, **kw):
        super().__init__(params, **kw)
        # each model's labels name its score columns
        self.labels = {name: _model_labels(resolve_path(spec.path)) for name, spec in params.classifiers.items()}
        self._models = None
        self._domains = None
        self._words = None
        self._perplexity = None
        self._score = None

    @property
    def columns(self) -> dict[str, pa.DataType]:
        columns: dict[str, pa.DataType] = {}
        if self.params.domains is not None:
            columns["blocked_domain"] = pa.string()
        if self.params.words is not None:
            columns["badword_hits"] = pa.int32()
            columns["badword_distinct"] = pa.int32()
            columns["badword_rate"] = pa.float32()
        for name, labels in self.labels.items():
            columns.update({f"{name}_{label}": pa.float32() for label in labels})
        if self.params.perplexity is not None:
            columns["perplexity"] = pa.float32()
            if self.params.perplexity.score_label is not None:
                columns["quality_score"] = pa.float32()
        return columns

    @property
    def histograms(self) -> dict[str, HistogramSpec]:
        histograms = {}
        if self.params.words is not None:
            histograms["badword_rate"] = HistogramSpec(0.0, 0.05, 20)
        for name, labels in self.labels.items():
            histograms.update({f"{name}_{label}": HistogramSpec(0.0, 1.0, 20) for label in labels})
        if self.params.perplexity is not None:
            histograms["perplexity"] = HistogramSpec(0.0, 5000.0, 25)
            if self.params.perplexity.score_label is not None:
                histograms["quality_score"] = HistogramSpec(0.0, 1.0, 20)
        return histograms

    @classmethod
    def check_params(cls, params: ClassifyParams, base) -> ClassifyParams:
        base = Path(base)
        classifiers = {}
        columns: set[str] = set()  # the score columns the classifiers write
        for name, spec in params.classifiers.items():
            path = resolve_path(spec.path, base)
            if not path.is_file():
                raise ValueError(f"classifiers.{name}.path: no such file {path}")
            labels = _model_labels(path)
            for label in {**spec.min, **spec.max}:
                if label not in labels:
                    raise ValueError(
                        f"classifiers.{name}: model {path.name} has no label {label!r} (labels: {', '.join(labels)})"
                    )
            classifiers[name] = spec.model_copy(update={"path": str(path)})
            columns.update(f"{name}_{label}" for label in labels)
        lists = {}
        for key, spec in (("domains", params.domains), ("words", params.words)):
            if spec is not None:
                path = resolve_path(spec.path, base)
                if not path.is_dir():
                    raise ValueError(f"{key}.path: no such folder {path}")
                lists[key] = spec.model_copy(update={"path": str(path)})
        update: dict = {"classifiers": classifiers, **lists}
        if params.perplexity is not None:
            update["perplexity"] = _checked_perplexity(params.perplexity, base, columns)
        checked = params.model_copy(update=update)
        if checked.domains is not None:
            DomainBlocklist(checked.domains.path, checked.domains.categories or None)
        if checked.words is not None:
            WordBlocklist(checked.words.path, checked.words.languages or None)
        return checked

    def setup(self) -> None:
        from refinery.classifiers.fasttext_model import FastTextClassifier, arrow_patterns

        arrow_patterns()
        p: ClassifyParams = self.params
        self._models = {
            name: FastTextClassifier(resolve_path(spec.path), max_chars=spec.max_chars)
            for name, spec in p.classifiers.items()
        }
        if p.domains is not None:
            self._domains = DomainBlocklist(resolve_path(p.domains.path), p.domains.categories or None)
        if p.words is not None:
            self._words = WordBlocklist(resolve_path(p.words.path), p.words.languages or None)
        if p.perplexity is not None:
            from refinery.classifiers.perplexity import PerplexityModel

            path = resolve_path(p.perplexity.path)
            self._perplexity = PerplexityModel(path)
            if p.perplexity.score_label is not None:
                from refinery.classifiers.quality_score import QualityScore

                self._score = QualityScore.from_card(_score_card(path))

    def process(self, batch: pa.RecordBatch) -> Verdict:
        p: ClassifyParams = self.params
        n = batch.num_rows
        text = batch.column("text")
        missing = text.is_null().to_numpy(zero_copy_only=False)
        # Arrow wants no mask at all when nothing is missing.
        mask = missing if missing.any() else None
        failed: dict[str, np.ndarray] = {}

        if self._domains is not None:
            urls = batch.column("url").to_pylist() if "url" in batch.schema.names else [None] * n
            categories = [self._domains.category(u) for u in urls]
            batch = set_column(batch, "blocked_domain", pa.array(categories, type=pa.string()))
            failed["blocked_domain"] = np.array([c is not None for c in categories], dtype=bool)

        if self._words is not None:
            spec = p.words
            texts = text.to_pylist()
            langs = batch.column(spec.lang_column).to_pylist() if spec.lang_column in batch.schema.names else [None] * n
            hits = np.zeros(n, dtype=np.int32)
            distinct = np.zeros(n, dtype=np.int32)
            rates = np.zeros(n, dtype=np.float32)
            bad = np.zeros(n, dtype=bool)
            for i in np.flatnonzero(~missing):
                found = self._words.hits(texts[i], langs[i] or spec.default_language)
                hits[i], distinct[i], rates[i] = found.count, found.distinct, found.rate
                bad[i] = spec.fails(found)
            batch = set_column(batch, "badword_hits", pa.array(hits, mask=mask))
            batch = set_column(batch, "badword_distinct", pa.array(distinct, mask=mask))
            batch = set_column(batch, "badword_rate", pa.array(rates, mask=mask))
            failed["badwords"] = bad

        # The text is prepared in Arrow, once per length limit, and each model scores the batch in one call.
        live = text if mask is None else text.filter(pa.array(~missing))
        lines: dict[int, list[str]] = {}
        for name, model in self._models.items():
            spec = p.classifiers[name]
            if spec.max_chars not in lines:
                lines[spec.max_chars] = prepare_column(live, spec.max_chars)
            probs = np.zeros((n, len(model.labels)), dtype=np.float32)
            probs[~missing] = model.predict_lines(lines[spec.max_chars])
            for j, label in enumerate(model.labels):
                batch = set_column(batch, f"{name}_{label}", pa.array(probs[:, j], mask=mask))
                if label in spec.min:
                    failed[f"{name}_{label}<{spec.min[label]:g}"] = (probs[:, j] < spec.min[label]) & ~missing
                if label in spec.max:
                    failed[f"{name}_{label}>{spec.max[label]:g}"] = (probs[:, j] > spec.max[label]) & ~missing
        if self._perplexity is not None:
            batch, failed = self._judge_perplexity(batch, live, missing, mask, failed)
        errors = {"missing_text": missing} if missing.any() else {}
        return Verdict(batch, failed, errors)

    def _judge_perplexity(
        self, batch: pa.RecordBatch, live: pa.Array, missing: np.ndarray, mask: np.ndarray | None, failed: dict
    ) -> tuple[pa.RecordBatch, dict]:
        from refinery.classifiers.quality_score import features, line_punctuation

        spec: PerplexitySpec = self.params.perplexity
        texts = pc.utf8_slice_codeunits(live, 0, spec.max_chars).to_pylist()
        ppl = np.full(len(missing), np.nan)
        ppl[~missing] = self._perplexity.perplexity(texts)
        unknown = np.isnan(ppl)  # missing text, or text without words
        batch = set_column(
            batch, "perplexity", pa.array(ppl.astype(np.float32), mask=unknown if unknown.any() else None)
        )
        if spec.max is not None:
            failed[f"perplexity>{spec.max:g}"] = (ppl > spec.max) & ~missing
        if self._score is not None:
            p = batch.column(spec.score_label).fill_null(0.0).to_numpy(zero_copy_only=False)
            punctuation = np.zeros(len(missing))
            punctuation[~missing] = line_punctuation(texts)
            score = self._score(features(p, ppl, punctuation)).astype(np.float32)
            batch = set_column(batch, "quality_score", pa.array(score, mask=mask))
            if spec.min_score is not None:
                failed[f"quality_score<{spec.min_score:g}"] = (score < spec.min_score) & ~missing
        return batch, failed
