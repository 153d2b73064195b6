"""Long-context selection (InternLM2 §3.1.6): length, statistical filters and coherence.

InternLM2 selects long-context training data in three steps: keep documents above a length
(32 KB), drop those failing statistical filters (repetition, symbols, alphabetic share, line
structure), then keep documents whose earlier text makes later text more predictable. The
statistics are the rules' (`refinery.stages.rules.statistics.document_statistics`, on the rules'
word tokens: Chinese and Japanese counted in characters); the coherence is how much better a
window is predicted after its preceding window than after a distant one of the same document
(`refinery.classifiers.coherence`), by default with a compressor, which reads every language.
With `annotate_only` every document is kept and `longctx_selected` marks the chosen ones, so a
runner can route them to their own output; in filter mode only they pass.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from pydantic import Field, model_validator

from refinery.pipeline.core import Strict
from refinery.pipeline.resources import resolve_path
from refinery.pipeline.stage import DocumentStage, StageParams
from refinery.pipeline.stats import HistogramSpec
from refinery.stages.rules.family import Texts
from refinery.stages.rules.statistics import DOCUMENT_STATISTICS, document_statistics
from refinery.tokenize.tokenizer import load_tokenizer

if TYPE_CHECKING:
    from refinery.classifiers.coherence import WindowScorer


class ScorerSpec(Strict):
    # zlib: a compressor with the context as preset dictionary (any language, no model file);
    # ngram: the English n-gram LM written by `refinery classifiers build`; internlm2: a checkpoint.
    kind: str = Field(default="zlib", pattern="^(zlib|ngram|internlm2)$")
    # ngram: the .npz (default: the bundled model); internlm2: the checkpoint folder.
    path: str | None = None
    # internlm2 only: the sentencepiece model of the checkpoint.
    tokenizer: str | None = None

    @model_validator(mode="after")
    def _model_path(self) -> "ScorerSpec":
        if self.kind == "ngram" and self.path is None:
            self.path = "models/classifiers/coherence-ngram.npz"
        if self.kind == "internlm2" and self.path is None:
            raise ValueError("path: the internlm2 scorer needs a checkpoint folder")
        return self


class LongCtxParams(StageParams):
    # InternLM2 selects documents above 32 KB; lower it to run on small samples.
    min_chars: int = Field(default=32_768, ge=0)
    # Gopher: at most 30% duplicated lines, at most 10% symbols (# or …) per word,
    # at least 80% of words with a letter, at most 90% bullet lines; FineWeb: at most 67% of
    # lines shorter than 30 characters.
    max_dup_line_frac: float = Field(default=0.3, ge=0, le=1)
    max_symbol_ratio: float = Field(default=0.1, ge=0)
    min_alpha_word_frac: float = Field(default=0.8, ge=0, le=1)
    max_bullet_line_frac: float = Field(default=0.9, ge=0, le=1)
    max_short_line_frac: float = Field(default=0.67, ge=0, le=1)
    short_line_chars: int = Field(default=30, gt=0)
    # Coherence: perplexity drop after the preceding window against a distant one (see
    # refinery.classifiers.coherence); the threshold is set on bench/longctx.py's tuning split.
    scorer: ScorerSpec = ScorerSpec()
    min_coherence: float = 0.026
    window_chars: int = Field(default=1000, ge=100)
    max_pairs: int = Field(default=32, gt=0)


class LongContext(DocumentStage):
    kind = "longctx"
    Params = LongCtxParams
    uses_model = True
    row_columns = ("lang",)  # a preceding langid's language tells Chinese and Japanese apart
    columns = {
        "n_chars": pa.int64(),
        "dup_line_frac": pa.float32(),
        "symbol_ratio": pa.float32(),
        "alpha_word_frac": pa.float32(),
        "short_line_frac": pa.float32(),
        "coherence_gain": pa.float32(),
        "longctx_selected": pa.bool_(),
    }
    histograms = {
        "n_chars": HistogramSpec(1, 1e7, 28, log=True),
        "dup_line_frac": HistogramSpec(0.0, 1.0, 20),
        "alpha_word_frac": HistogramSpec(0.0, 1.0, 20),
        "coherence_gain": HistogramSpec(-0.1, 0.2, 30),
    }

    def __init__(self, params: LongCtxParams, **kw):
        super().__init__(params, **kw)
        self._scorer: WindowScorer | None = None

    @classmethod
    def check_params(cls, params: LongCtxParams, base) -> LongCtxParams:
        spec = params.scorer
        if spec.path is None:  # zlib: no model
            return params
        path = resolve_path(spec.path, Path(base))
        if not path.exists():
            raise ValueError(f"scorer.path: no such file or folder {path}")
        resolved = {"path": str(path)}
        if spec.kind == "ngram":
            from refinery.classifiers.coherence import load_scorer

            try:  # small: loaded here so that a file that is not a model fails before any work
                load_scorer(spec.kind, str(path))
            except (ValueError, OSError, KeyError, zipfile.BadZipFile) as err:
                raise ValueError(f"scorer.path: {path} is not an n-gram model ({err})") from None
        if spec.kind == "internlm2":
            if spec.tokenizer is None:
                raise ValueError("scorer.tokenizer: the internlm2 scorer needs the checkpoint's sentencepiece model")
            tokenizer = resolve_path(spec.tokenizer, Path(base))
            if not tokenizer.is_file():
                raise ValueError(f"scorer.tokenizer: no such file {tokenizer}")
            load_tokenizer(tokenizer)
            resolved["tokenizer"] = str(tokenizer)
        return params.model_copy(update={"scorer": spec.model_copy(update=resolved)})

    def setup(self) -> None:
        from refinery.classifiers.coherence import load_scorer

        spec = self.params.scorer
        options = {"tokenizer": str(resolve_path(spec.tokenizer))} if spec.kind == "internlm2" else {}
        path = str(resolve_path(spec.path)) if spec.path else None
        self._scorer = load_scorer(spec.kind, path, **options)
        document_statistics(Texts(pa.array(["Warm up.\nA line."], type=pa.large_string()), None))

    def evaluate(self, text: str, row: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        from refinery.classifiers.coherence import coherence

        p: LongCtxParams = self.params
        assert self._scorer is not None, "setup() loads the scorer"
        if text is None:
            raise ValueError("document has no text")
        scores: dict[str, Any] = {"n_chars": len(text)}
        if len(text) < p.min_chars:
            scores["longctx_selected"] = False
            return scores, ["too_short"]
        langs = pa.array([row.get("lang")], type=pa.string()) if "lang" in row else None
        values = document_statistics(Texts(pa.array([text], type=pa.large_string()), langs), p.short_line_chars)[0]
        stats = dict(zip(DOCUMENT_STATISTICS, values.tolist()))
        scores.update({k: v for k, v in stats.items() if k in self.columns})
        failed = []
        if stats["dup_line_frac"] > p.max_dup_line_frac:
            failed.append("repetitive_lines")
        if stats["symbol_ratio"] > p.max_symbol_ratio:
            failed.append("symbols")
        if stats["alpha_word_frac"] < p.min_alpha_word_frac:
            failed.append("non_alphabetic")
        if stats["bullet_line_frac"] > p.max_bullet_line_frac:
            failed.append("bullet_lines")
        if stats["short_line_frac"] > p.max_short_line_frac:
            failed.append("short_lines")
        if not failed:
            result = coherence(text, self._scorer, p.window_chars, p.max_pairs)
            if result is None:
                failed.append("unscorable")
            else:
                scores["coherence_gain"] = result.gain
                if result.gain < p.min_coherence:
                    failed.append("incoherent")
        scores["longctx_selected"] = not failed
        return scores, failed
