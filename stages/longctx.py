"""Long-context selection (InternLM2 §3.1.6): length, statistical filters and perplexity coherence.

InternLM2 selects long-context training data in three steps: keep documents above a length
(32 KB), drop those failing statistical filters (repetition, symbols, alphabetic share, line
structure), then keep documents whose earlier text makes later text more predictable under a
causal LM. With `annotate_only` every document is kept and `longctx_selected` marks the chosen
ones, so a runner can route them to their own output; in filter mode only they pass.
"""

from __future__ import annotations

import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import Field

from refinery.pipeline.core import Strict
from refinery.pipeline.resources import resolve_path
from refinery.pipeline.stage import DocumentStage, StageParams
from refinery.pipeline.stats import HistogramSpec
from refinery.tokenize.tokenizer import load_tokenizer


class ScorerSpec(Strict):
    kind: str = Field(default="ngram", pattern="^(ngram|internlm2)$")
    # ngram: the .npz written by `refinery classifiers build`; internlm2: a checkpoint folder.
    path: str = "models/classifiers/coherence-ngram.npz"
    # internlm2 only: the sentencepiece model of the checkpoint.
    tokenizer: str | None = None


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
    # Coherence: relative perplexity drop from the preceding segment (see refinery.classifiers.coherence).
    scorer: ScorerSpec = ScorerSpec()
    min_coherence: float = 0.03
    segment_chars: int = Field(default=1000, ge=100)
    max_pairs: int = Field(default=32, gt=0)


_BULLETS = ("-", "*", "•", "·", "‣", "–", "●")


def text_statistics(text: str, short_line_chars: int = 30) -> dict[str, float]:
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    words = text.split()
    n_lines, n_words = max(1, len(lines)), max(1, len(words))
    counts = Counter(lines)
    return {
        "dup_line_frac": sum(c for c in counts.values() if c > 1) / n_lines,
        "symbol_ratio": (text.count("#") + text.count("...") + text.count("…")) / n_words,
        "alpha_word_frac": sum(1 for w in words if any(ch.isalpha() for ch in w)) / n_words,
        "bullet_line_frac": sum(1 for line in lines if line.startswith(_BULLETS)) / n_lines,
        "short_line_frac": sum(1 for line in lines if len(line) < short_line_chars) / n_lines,
    }


class LongContext(DocumentStage):
    kind = "longctx"
    Params = LongCtxParams
    uses_model = True
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
        "coherence_gain": HistogramSpec(-0.1, 0.4, 25),
    }

    def __init__(self, params: LongCtxParams, **kw):
        super().__init__(params, **kw)
        self._scorer = None

    @classmethod
    def check_params(cls, params: LongCtxParams, base) -> LongCtxParams:
        spec = params.scorer
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
        self._scorer = load_scorer(spec.kind, str(resolve_path(spec.path)), **options)

    def evaluate(self, text: str, row: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        from refinery.classifiers.coherence import coherence

        p: LongCtxParams = self.params
        if text is None:
            raise ValueError("document has no text")
        scores: dict[str, Any] = {"n_chars": len(text)}
        if len(text) < p.min_chars:
            scores["longctx_selected"] = False
            return scores, ["too_short"]
        stats = text_statistics(text, p.short_line_chars)
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
            result = coherence(text, self._scorer, p.segment_chars, p.max_pairs)
            if result is None:
                failed.append("unscorable")
            else:
                scores["coherence_gain"] = result.gain
                if result.gain < p.min_coherence:
                    failed.append("incoherent")
        scores["longctx_selected"] = not failed
        return scores, failed
