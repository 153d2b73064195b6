"""Length filter on characters and whitespace words, vectorized with Arrow compute."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import model_validator

from refinery.pipeline.stage import MapStage, StageParams, Verdict, set_column
from refinery.pipeline.stats import HistogramSpec


class LengthParams(StageParams):
    min_chars: int = 0
    max_chars: int | None = None
    min_words: int = 0
    max_words: int | None = None

    @model_validator(mode="after")
    def _ordered(self):
        if self.max_chars is not None and self.max_chars < self.min_chars:
            raise ValueError("max_chars must be >= min_chars")
        if self.max_words is not None and self.max_words < self.min_words:
            raise ValueError("max_words must be >= min_words")
        return self


class LengthFilter(MapStage):
    kind = "length"
    Params = LengthParams
    columns = {"n_chars": pa.int64(), "n_words": pa.int64()}
    histograms = {"n_chars": HistogramSpec(1, 1e7, 28, log=True), "n_words": HistogramSpec(1, 1e6, 24, log=True)}

    def process(self, batch: pa.RecordBatch) -> Verdict:
        p: LengthParams = self.params
        text = batch.column("text")
        chars = pc.utf8_length(text).cast(pa.int64())
        words = pc.list_value_length(pc.utf8_split_whitespace(text)).cast(pa.int64())
        batch = set_column(set_column(batch, "n_chars", chars), "n_words", words)
        bounds = [
            ("too_few_chars", p.min_chars or None, chars, pc.less),
            ("too_many_chars", p.max_chars, chars, pc.greater),
            ("too_few_words", p.min_words or None, words, pc.less),
            ("too_many_words", p.max_words, words, pc.greater),
        ]
        failed = {
            rule: compare(values, bound).to_numpy(zero_copy_only=False).astype(bool)
            for rule, bound, values, compare in bounds
            if bound is not None
        }
        return Verdict(batch, failed)
