"""Text normalization: Unicode NFC, unified line endings, trimmed trailing spaces and blank runs.

Runs before any rule so that every later decision sees the same byte sequence for the same
visible text (InternLM2 normalizes before its rule filters; FineWeb relies on ftfy-like fixes).
Each step is one Arrow kernel over the whole column (utf8proc's normalization, RE2 rewrites, a
trim by Python's own whitespace characters), equal to the per-document `str` version.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from refinery.pipeline.stage import MapStage, StageParams, Verdict, set_column

# What str.strip() removes: the characters for which str.isspace() holds.
WHITESPACE = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())


class NormalizeParams(StageParams):
    form: str = "NFC"
    max_blank_lines: int = 1
    drop_empty: bool = True


class Normalize(MapStage):
    kind = "normalize"
    Params = NormalizeParams

    def process(self, batch: pa.RecordBatch) -> Verdict:
        p: NormalizeParams = self.params
        texts = pc.replace_substring(pc.replace_substring(batch.column("text"), "\r\n", "\n"), "\r", "\n")
        texts = pc.utf8_normalize(texts, p.form)
        texts = pc.replace_substring_regex(texts, r"[ \t\x{00a0}]+\n", "\n")
        texts = pc.replace_substring_regex(texts, r"\n{%d,}" % (p.max_blank_lines + 2), "\n" * (p.max_blank_lines + 1))
        texts = pc.utf8_trim(texts, characters=WHITESPACE).cast(pa.large_string())
        batch = set_column(batch, "text", texts)
        failed = {}
        if p.drop_empty:
            failed["empty_text"] = pc.fill_null(pc.equal(pc.utf8_length(texts), 0), False).to_numpy(
                zero_copy_only=False
            )
        return Verdict(batch, failed)
