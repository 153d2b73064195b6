"""The langid stage on real sentences: accuracy, CJK script check, thresholds and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from refinery.pipeline.config import validate
from refinery.pipeline.stage import run_map_stage
from refinery.stages.langid import DEFAULT_MODEL, LangId, LangIdParams, script_label

SENTENCES = [json.loads(line) for line in (Path(__file__).parent / "data" / "web" / "langid_sentences.jsonl").open()]


def batch_of(texts: list[str]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist(
        [{"id": f"d{i}", "text": t, "url": None, "source": "test"} for i, t in enumerate(texts)]
    )


@pytest.fixture(scope="module")
def stage():
    st = LangId(LangIdParams())
    st.setup()
    return st


def test_model_is_bundled():
    assert DEFAULT_MODEL.is_file() and DEFAULT_MODEL.stat().st_size > 900_000


def test_accuracy_per_language(stage):
    verdict = stage.process(batch_of([s["text"] for s in SENTENCES]))
    got = np.array(verdict.batch.column("lang").to_pylist())
    want = np.array([s["lang"] for s in SENTENCES])
    for lang in sorted(set(want)):
        assert (got[want == lang] == lang).mean() >= 0.92, lang


def test_script_check_fixes_short_chinese(stage):
    text = "五、同业间良性的普遍推广与各团体的互助。"  # lid.176.ftz alone says ja
    raw, _ = stage.predict([text])
    assert raw == ["ja"]
    assert stage.process(batch_of([text])).batch.column("lang")[0].as_py() == "zh"
    assert script_label("これは日本語の文です。", "zh") == "ja"
    assert script_label("Hello", "ja") == "ja"


def test_newlines_do_not_change_the_answer(stage):
    text = "This is an English sentence.\nAnd here is another one, on its own line."
    verdict = stage.process(batch_of([text, text.replace("\n", " ")]))
    langs = verdict.batch.column("lang").to_pylist()
    scores = verdict.batch.column("lang_score").to_pylist()
    assert langs == ["en", "en"] and scores[0] == scores[1]


def test_keep_list_threshold_and_empty():
    st = LangId(LangIdParams(languages=["en"], threshold=0.65))
    st.setup()
    texts = [
        "The committee will publish its report next week.",
        "Der Ausschuss veröffentlicht seinen Bericht.",
        "",
        "   \n ",
        "ok",
    ]
    out, stats = run_map_stage(st, batch_of(texts))
    assert out.column("text").to_pylist() == [texts[0]]
    assert stats.dropped_by_reason["empty_text"] == 2
    assert stats.dropped_by_reason["lang_not_allowed"] == 1
    assert stats.docs_in == stats.docs_kept + stats.docs_dropped + stats.docs_errored


def test_annotate_only_keeps_everything():
    st = LangId(LangIdParams(languages=["en"]), annotate_only=True)
    st.setup()
    out, stats = run_map_stage(st, batch_of(["Guten Morgen, wie geht es Ihnen heute?", "Good morning to all of you."]))
    assert out.num_rows == 2
    assert out.column("langid_reason").to_pylist() == ["lang_not_allowed", None]
    assert out.column("lang").to_pylist() == ["de", "en"]


def test_config_checks_the_model_path(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "x"}\n')
    base = {"input": {"paths": [str(tmp_path / "a.jsonl")], "format": "jsonl"}}
    job = validate({**base, "stages": [{"stage": "langid", "languages": ["en"]}]}, base=tmp_path)
    assert Path(job.stages[0].params.model) == DEFAULT_MODEL
    with pytest.raises(ValueError, match="model"):
        validate({**base, "stages": [{"stage": "langid", "model": "missing.ftz"}]}, base=tmp_path)
