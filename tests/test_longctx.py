"""Long-context selection: n-gram cache LM, coherence score and the longctx stage."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from refinery.classifiers.coherence import coherence, pair_indices, split_segments
from refinery.classifiers.ngram import NgramLM
from refinery.pipeline.stage import run_map_stage
from refinery.stages.longctx import LongContext, LongCtxParams

ROOT = Path(__file__).parents[1]
SPEECH = (ROOT / "tests" / "data" / "classifiers" / "2005-GWBush.txt").read_text()


@pytest.fixture(scope="module")
def lm():
    return NgramLM.load(ROOT / "models" / "classifiers" / "coherence-ngram.npz")


def test_segments_cover_text():
    pieces = split_segments(SPEECH, 1000)
    assert "".join(pieces).split() == SPEECH.split()
    assert all(len(p) <= 1500 for p in pieces)
    assert pair_indices(1, 8) == [] and pair_indices(5, 8) == [1, 2, 3, 4] and len(pair_indices(100, 8)) == 8


def test_context_lowers_perplexity_of_real_text(lm):
    segments = split_segments(SPEECH, 1500)
    alone = lm.score_segments(segments[1:], [None] * (len(segments) - 1))
    with_context = lm.score_segments(segments[1:], segments[:-1])
    assert with_context.mean() < alone.mean() and (with_context < alone).mean() > 0.7


def test_ngram_roundtrip(tmp_path, lm):
    small = NgramLM.train([SPEECH], vocab_size=500)
    small.save(tmp_path / "lm.npz")
    again = NgramLM.load(tmp_path / "lm.npz")
    probe = ["the state of our union is strong", "we will"]
    assert np.allclose(
        small.score_segments(probe, [None, SPEECH[:500]]), again.score_segments(probe, [None, SPEECH[:500]])
    )


def test_real_document_more_coherent_than_its_shuffle(lm):
    lines = [line for line in SPEECH.split("\n") if line.strip()]
    shuffled = lines[:]
    random.Random(0).shuffle(shuffled)
    real = coherence(SPEECH, lm, 1000, 32)
    fake = coherence("\n".join(shuffled), lm, 1000, 32)
    assert real.gain > fake.gain


def _batch(texts):
    return pa.RecordBatch.from_pydict(
        {"id": [str(i) for i in range(len(texts))], "text": pa.array(texts, pa.large_string())}
    )


def test_stage_filter_and_annotate_modes():
    texts = [SPEECH, "short", ("spam spam spam\n" * 3000), None]
    params = LongCtxParams(min_chars=10_000, min_coherence=0.0)
    stage, annotating = LongContext(params), LongContext(params, annotate_only=True)
    stage.setup()
    annotating.setup()
    out, stats = run_map_stage(stage, _batch(texts))
    assert stats.dropped_by_reason == {"too_short": 1, "repetitive_lines": 1}
    assert stats.errors_by_kind == {"ValueError": 1}
    assert out.num_rows == 1 and out.column("longctx_selected").to_pylist() == [True]
    assert out.column("coherence_gain")[0].as_py() > 0
    assert sum(stats.histograms["coherence_gain"]["counts"]) == 1

    out, stats = run_map_stage(annotating, _batch(texts[:3]))
    assert out.num_rows == 3
    assert out.column("longctx_selected").to_pylist() == [True, False, False]
    assert out.column("longctx_reason").to_pylist() == [None, "too_short", "repetitive_lines"]


def test_check_params(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        LongContext.check_params(LongCtxParams.model_validate({"scorer": {"path": "missing.npz"}}), tmp_path)
    with pytest.raises(ValueError, match="tokenizer"):
        LongContext.check_params(
            LongCtxParams.model_validate({"scorer": {"kind": "internlm2", "path": str(tmp_path)}}), tmp_path
        )
