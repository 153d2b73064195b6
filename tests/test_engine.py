"""The stage API turns verdicts into kept rows and complete statistics."""

import numpy as np
import pyarrow as pa

from refinery.pipeline.stage import DocumentError, DocumentStage, StageParams, apply_verdict, run_map_stage
from refinery.pipeline.stats import HistogramSpec, StageStats
from refinery.stages.length import LengthFilter, LengthParams
from refinery.stages.normalize import Normalize, NormalizeParams


def batch(texts):
    n = len(texts)
    return pa.RecordBatch.from_pydict(
        {"id": [f"d{i}" for i in range(n)], "text": texts, "url": [None] * n, "source": ["mem"] * n},
        schema=pa.schema(
            [("id", pa.string()), ("text", pa.large_string()), ("url", pa.string()), ("source", pa.string())]
        ),
    )


class VowelRatio(DocumentStage):
    kind = "vowels"
    columns = {"vowel_ratio": pa.float64()}
    histograms = {"vowel_ratio": HistogramSpec(0.0, 1.0, 10)}

    def evaluate(self, text, row):
        if "\x00" in text:
            raise DocumentError("nul_byte")
        if text == "boom":
            raise ZeroDivisionError
        ratio = sum(c in "aeiou" for c in text) / len(text)
        rules = [r for r, bad in (("few_vowels", ratio < 0.2), ("short", len(text) < 4)) if bad]
        return {"vowel_ratio": ratio}, rules


def test_document_stage_reasons_errors_and_histogram():
    stage = VowelRatio(StageParams())
    kept, stats = run_map_stage(stage, batch(["banana split", "xyz", "ok", "rhythm strength", "bad\x00", "boom"]))
    assert kept.column("text").to_pylist() == ["banana split"]
    assert stats.docs_in == 6 and stats.docs_kept == 1 and stats.docs_dropped == 3 and stats.docs_errored == 2
    assert stats.balanced()
    # first failing rule is the reason; every failing rule is counted
    assert stats.dropped_by_reason == {"few_vowels": 2, "short": 1}
    assert stats.failed_by_rule == {"few_vowels": 2, "short": 2}
    assert stats.errors_by_kind == {"nul_byte": 1, "ZeroDivisionError": 1}
    assert sum(stats.histograms["vowel_ratio"]["counts"]) == 4
    assert {e["id"] for e in stats.examples["few_vowels"]} == {"d1", "d3"}
    assert set(stats.examples) == {"few_vowels", "short", "error:nul_byte", "error:ZeroDivisionError"}


def test_annotate_only_keeps_everything_and_records_reason():
    stage = VowelRatio(StageParams(), annotate_only=True)
    kept, stats = run_map_stage(stage, batch(["banana split", "xyz", "bad\x00"]))
    assert kept.num_rows == 2
    assert kept.column("vowels_reason").to_pylist() == [None, "few_vowels"]
    assert stats.docs_dropped == 0 and stats.docs_errored == 1 and stats.dropped_by_reason == {"few_vowels": 1}


def test_crashing_stage_errors_the_batch_not_the_run():
    class Crash(VowelRatio):
        def process(self, batch):
            raise RuntimeError("model exploded")

    kept, stats = run_map_stage(Crash(StageParams()), batch(["a", "b"]))
    assert kept.num_rows == 0 and stats.errors_by_kind == {"stage_crash:RuntimeError": 2} and stats.balanced()


def test_normalize_and_length_stages():
    texts = ["Cafe\u0301  \r\n\r\n\r\n\r\nline two  ", "   \n  ", "one two three four five"]
    kept, stats = run_map_stage(Normalize(NormalizeParams()), batch(texts))
    assert kept.column("text").to_pylist() == ["Caf\u00e9\n\nline two", "one two three four five"]
    assert stats.dropped_by_reason == {"empty_text": 1}
    kept, stats = run_map_stage(LengthFilter(LengthParams(min_words=4)), kept)
    assert kept.column("n_words").to_pylist() == [5]
    assert stats.dropped_by_reason == {"too_few_words": 1}


def test_stats_merge_is_associative_and_examples_bounded():
    parts = []
    for k in range(6):
        s = StageStats("x", "x", docs_in=3, docs_kept=1, docs_dropped=2, dropped_by_reason={"r": 2})
        s.add_examples("r", [f"id{k}a", f"id{k}b"], [None, None], ["t", "t"])
        s.add_histogram("h", HistogramSpec(0, 1, 4), np.array([0.1, 0.9, 2.0]))
        parts.append(s)
    left = StageStats("x", "x")
    for p in parts:
        left.merge(p)
    right = StageStats("x", "x").merge(StageStats("x", "x").merge(parts[3]).merge(parts[4]).merge(parts[5]))
    for p in parts[:3]:
        right.merge(p)
    assert left.to_dict() == right.to_dict()
    assert left.docs_in == 18 and left.dropped_by_reason == {"r": 12}
    assert len(left.examples["r"]) == 5
    assert left.histograms["h"]["counts"] == [6, 0, 0, 12]


def test_apply_verdict_bytes():
    stage = LengthFilter(LengthParams(min_chars=3))
    b = batch(["héllo", "a"])
    kept, stats = apply_verdict(stage, b, stage.process(b))
    assert stats.bytes_in == 7 and stats.bytes_kept == 6


def test_document_stage_rows_carry_only_the_columns_it_reads():
    seen = []

    class UrlReader(VowelRatio):
        row_columns = ("url", "source")

        def evaluate(self, text, row):
            seen.append(row)
            return {"vowel_ratio": 0.5}, []

    run_map_stage(UrlReader(StageParams()), batch(["banana"]))
    assert seen == [{"url": None, "source": "mem"}]
