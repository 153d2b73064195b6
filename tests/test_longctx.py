"""Long-context selection: windows, the coherence score, document statistics and the longctx stage."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from refinery.classifiers.coherence import (
    MIN_WINDOWS,
    ZlibScorer,
    coherence,
    distant_indices,
    load_scorer,
    pair_indices,
    split_windows,
)
from refinery.classifiers.ngram import NgramLM
from refinery.pipeline.stage import run_map_stage
from refinery.stages.longctx import LongContext, LongCtxParams
from refinery.stages.rules.family import Texts
from refinery.stages.rules.statistics import DOCUMENT_STATISTICS, document_statistics

ROOT = Path(__file__).parents[1]
SPEECH = (ROOT / "tests" / "data" / "classifiers" / "2005-GWBush.txt").read_text()
CHAPTERS = {
    path.name.split("-")[0]: path.read_text(encoding="utf-8")
    for path in sorted((ROOT / "tests" / "data" / "longctx").glob("*.txt"))
}
MIN_COHERENCE = LongCtxParams().min_coherence


def splice(text: str, seed: int = 0) -> str:
    """The chapter's own paragraphs in random order: same vocabulary, no continuity."""
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    random.Random(seed).shuffle(paragraphs)
    return "\n\n".join(paragraphs)


@pytest.fixture(scope="module")
def lm():
    return NgramLM.load(ROOT / "models" / "classifiers" / "coherence-ngram.npz")


def test_windows_cover_text():
    pieces = split_windows(SPEECH, 1000)
    assert "".join(pieces).split() == SPEECH.split()
    assert all(len(p) <= 1500 for p in pieces)
    assert pair_indices(1, 8) == [] and pair_indices(5, 8) == [1, 2, 3, 4] and len(pair_indices(100, 8)) == 8


def test_distant_windows_are_not_neighbours():
    for n in (MIN_WINDOWS, 5, 9, 40):
        for k in range(1, n):
            far = distant_indices(k, n)
            assert far and all(min(abs(j - k), n - abs(j - k)) >= 2 for j in far)


def test_compressor_context_helps_the_next_window():
    windows = split_windows(CHAPTERS["zh"], 1000)
    z = ZlibScorer()
    alone = z.score_windows(windows[1:], [None] * (len(windows) - 1))
    after = z.score_windows(windows[1:], windows[:-1])
    assert (after < alone).all()


@pytest.mark.parametrize("lang", sorted(CHAPTERS))
def test_chapter_coherent_and_its_splice_not(lang):
    text = CHAPTERS[lang]
    real = coherence(text, ZlibScorer())
    fakes = [coherence(splice(text, seed), ZlibScorer()).gain for seed in range(3)]
    assert real.pairs >= 10 and real.gain >= MIN_COHERENCE
    # its own paragraphs shuffled: a harder negative than a splice of the whole book
    assert max(fakes) < real.gain / 2 and np.mean(fakes) < MIN_COHERENCE


def test_every_document_of_a_few_hundred_characters_has_a_score():
    z = ZlibScorer()
    assert coherence("short text " * 10, z) is None
    short = coherence(CHAPTERS["fr"][:1000], z)
    assert short is not None and short.pairs >= MIN_WINDOWS - 1


def test_ngram_scorer_still_plugs_in(lm, tmp_path):
    windows = split_windows(SPEECH, 1500)
    alone = lm.score_windows(windows[1:], [None] * (len(windows) - 1))
    with_context = lm.score_windows(windows[1:], windows[:-1])
    assert with_context.mean() < alone.mean() and (with_context < alone).mean() > 0.7
    small = NgramLM.train([SPEECH], vocab_size=500)
    small.save(tmp_path / "lm.npz")
    again = load_scorer("ngram", str(tmp_path / "lm.npz"))
    probe = ["the state of our union is strong", "we will"]
    assert np.allclose(
        small.score_windows(probe, [None, SPEECH[:500]]), again.score_windows(probe, [None, SPEECH[:500]])
    )


def _statistics(texts: list[str], langs: list[str | None] | None = None) -> list[dict[str, float]]:
    column = pa.array(texts, pa.large_string())
    values = document_statistics(Texts(column, pa.array(langs, pa.string()) if langs else None))
    return [dict(zip(DOCUMENT_STATISTICS, row)) for row in values.tolist()]


def test_document_statistics_definitions():
    (s,) = _statistics(["Dup line here.\nDup line here.\n- a bullet point line that is long enough\n# x ...\n\n"])
    # as the Gopher rule: re.split(r"\n+") gives 5 lines (the trailing empty one too), one repeats
    assert s["dup_line_frac"] == pytest.approx(1 / 5)
    assert s["bullet_line_frac"] == pytest.approx(1 / 5)  # str.splitlines: 5 lines with the blank one
    assert s["short_line_frac"] == pytest.approx(3 / 4)  # non-blank lines of at most 30 characters
    assert s["symbol_ratio"] == pytest.approx(2 / 20)  # '#' and '...' per token (punctuation included)
    assert s["alpha_word_frac"] == 1.0  # punctuation and markup are not words


def test_statistics_read_chinese_in_characters():
    zh = "长上下文数据需要连贯的文本。" * 3  # one 42-character line with no spaces
    as_zh, by_script, as_en = _statistics([zh, zh, zh], ["zh", None, "en"])
    assert as_zh == by_script  # no language: Han script decides
    assert as_zh["alpha_word_frac"] == 1.0 and as_zh["short_line_frac"] == 0.0
    assert as_en["short_line_frac"] == 0.0
    (half,) = _statistics(["长上下文数据需要连贯的文本。"], ["zh"])  # 14 Han + 1 stop: 29 columns
    assert half["short_line_frac"] == 1.0
    for text in CHAPTERS.values():
        (s,) = _statistics([text])
        assert s["alpha_word_frac"] > 0.9 and s["short_line_frac"] < 0.67 and s["dup_line_frac"] < 0.3


def _batch(texts, langs=None):
    columns = {"id": [str(i) for i in range(len(texts))], "text": pa.array(texts, pa.large_string())}
    if langs is not None:
        columns["lang"] = pa.array(langs, pa.string())
    return pa.RecordBatch.from_pydict(columns)


def test_stage_filter_and_annotate_modes():
    texts = [CHAPTERS["zh"], splice(CHAPTERS["ja"]), "short", ("spam spam spam\n" * 3000), None]
    langs = ["zh", "ja", "en", "en", None]
    params = LongCtxParams(min_chars=10_000)
    stage, annotating = LongContext(params), LongContext(params, annotate_only=True)
    stage.setup()
    annotating.setup()
    out, stats = run_map_stage(stage, _batch(texts, langs))
    assert stats.dropped_by_reason == {"incoherent": 1, "too_short": 1, "repetitive_lines": 1}
    assert stats.errors_by_kind == {"ValueError": 1}
    assert out.num_rows == 1 and out.column("longctx_selected").to_pylist() == [True]
    assert out.column("coherence_gain")[0].as_py() > MIN_COHERENCE
    assert sum(stats.histograms["coherence_gain"]["counts"]) == 2

    out, stats = run_map_stage(annotating, _batch(texts[:4]))
    assert out.num_rows == 4
    assert out.column("longctx_selected").to_pylist() == [True, False, False, False]
    assert out.column("longctx_reason").to_pylist() == [None, "incoherent", "too_short", "repetitive_lines"]


def test_check_params(tmp_path):
    LongContext.check_params(LongCtxParams(), tmp_path)  # zlib: no model file
    with pytest.raises(ValueError, match="no such file"):
        LongContext.check_params(
            LongCtxParams.model_validate({"scorer": {"kind": "ngram", "path": "missing.npz"}}), tmp_path
        )
    with pytest.raises(ValueError, match="tokenizer"):
        LongContext.check_params(
            LongCtxParams.model_validate({"scorer": {"kind": "internlm2", "path": str(tmp_path)}}), tmp_path
        )
    with pytest.raises(ValueError, match="checkpoint folder"):
        LongCtxParams.model_validate({"scorer": {"kind": "internlm2"}})
    bundled = LongCtxParams.model_validate({"scorer": {"kind": "ngram"}})
    LongContext.check_params(bundled, ROOT)
    assert Path(bundled.scorer.path).is_file()
