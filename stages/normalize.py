"""Text normalization: Unicode NFC, unified line endings, trimmed trailing spaces and blank runs.

Runs before any rule so that every later decision sees the same byte sequence for the same
visible text (InternLM2 normalizes before its rule filters; FineWeb relies on ftfy-like fixes).
"""
from __future__ import annotations

import re
import unicodedata

import pyarrow as pa
import pyarrow.compute as pc

from refinery.pipeline.stage import MapStage, StageParams, Verdict, set_column

_TRAILING_SPACE = re.compile(r"[ \t\u00a0]+\n")


class NormalizeParams(StageParams):
    form: str = "NFC"
    max_blank_lines: int = 1
    drop_empty: bool = True


class Normalize(MapStage):
    kind = "normalize"
    Params = NormalizeParams

    def process(self, batch: pa.RecordBatch) -> Verdict:
        p: NormalizeParams = self.params
        blank = re.compile(r"\n{%d,}" % (p.max_blank_lines + 2))
        keep_lines = "\n" * (p.max_blank_lines + 1)
        out = []
        for text in batch.column("text").to_pylist():
            text = unicodedata.normalize(p.form, text.replace("\r\n", "\n").replace("\r", "\n"))
            text = _TRAILING_SPACE.sub("\n", text)
            out.append(blank.sub(keep_lines, text).strip())
        texts = pa.array(out, type=pa.large_string())
        batch = set_column(batch, "text", texts)
        failed = {}
        if p.drop_empty:
            failed["empty_text"] = pc.equal(pc.utf8_length(texts), 0).to_numpy(zero_copy_only=False).astype(bool)
        return Verdict(batch, failed)
