"""The rules stage: each family on real extracted pages and on crafted edge cases."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pytest

from refinery.pipeline.config import validate
from refinery.pipeline.stage import run_map_stage
from refinery.stages.rules import Rules, RulesParams, rule_names
from refinery.stages.words import cjk_documents, code_points, split_words

PAGES = {
    json.loads(line)["id"]: json.loads(line)
    for line in gzip.open(Path(__file__).parent / "data" / "web" / "extracted.jsonl.gz", "rt")
}


def batch_of(texts, langs=None) -> pa.RecordBatch:
    rows = [{"id": f"d{i}", "text": t, "url": None, "source": "test"} for i, t in enumerate(texts)]
    if langs is not None:
        for row, lang in zip(rows, langs):
            row["lang"] = lang
    return pa.RecordBatch.from_pylist(rows)


def failed_rules(stage: Rules, texts: list[str], lang: str | None = None) -> list[list[str]]:
    batch = batch_of(texts, None if lang is None else [lang] * len(texts))
    return stage.process(batch).batch.column("rules_failed").to_pylist()


def test_word_splitting():
    assert split_words("Don't stop... the well-known U.S. team (e.g. 3.5%)") == [
        "Don",
        "'t",
        "stop",
        "...",
        "the",
        "well",
        "-",
        "known",
        "U.S.",
        "team",
        "(",
        "e.g.",
        "3.5",
        "%",
        ")",
    ]
    assert split_words("中文测试。", cjk=True) == ["中", "文", "测", "试", "。"]
    texts = pa.array(["这是一个中文句子，没有空格。", "An English sentence.", "Anything", "这是中文", "中文"])
    assert cjk_documents(*code_points(texts), None)[:2].tolist() == [True, False]
    langs = pa.array([None, None, "zh", "en", ""])
    assert cjk_documents(*code_points(texts), langs).tolist() == [True, False, True, False, True]


def test_real_pages_funnel():
    st = Rules(RulesParams())
    ids = sorted(PAGES)[:120]
    out, stats = run_map_stage(st, batch_of([PAGES[i]["text"] for i in ids]))
    assert stats.docs_in == stats.docs_kept + stats.docs_dropped == 120
    assert 20 <= stats.docs_kept <= 100
    assert set(stats.dropped_by_reason) <= set(rule_names(st.params))
    assert all(not failed for failed in out.column("rules_failed").to_pylist())
    # every reason has examples for `refinery stats`
    assert set(stats.examples) == set(stats.dropped_by_reason)


def test_each_family_fires():
    st = Rules(RulesParams(c4_paragraph={}, c4_badwords={}))
    prose = (
        "The committee met on Monday to discuss the budget, and the members agreed that the plan "
        "should be published with all of the figures. "
    ) * 3
    cases = {
        "gopher_too_few_words": "Too short to be a document.",
        "gopher_dup_line_frac": "\n".join(["Buy now and save big on everything."] * 40),
        "gopher_stop_words": " ".join(["Lorem"] * 30 + ["quality"] * 30) + ".",
        "c4_curly_bracket": "\n".join([prose.strip()] * 2 + ["function f() { return the value of it; }."]),
        "c4_lorem_ipsum": "Lorem ipsum dolor sit amet, consectetur adipiscing elit and so on.\n" + prose,
        "c4_few_paragraphs": prose,
        "c4_badwords": prose + " This page is about porn and nothing else.",
        "fineweb_line_punct": "\n".join(f"menu item number {i} with the words of a link" for i in range(60)),
        "internlm2_separators": prose + "\n" + "\n".join(["=" * 40, prose] * 5),
    }
    for rule, failed in zip(cases, failed_rules(st, list(cases.values()))):
        assert rule in failed, (rule, failed)


def test_cjk_documents_are_not_judged_by_english_words():
    text = next(p["text"] for i, p in PAGES.items() if "xinhuanet" in i)
    st = Rules(RulesParams())
    [as_zh], [as_en] = failed_rules(st, [text], "zh"), failed_rules(st, [text], "en")
    assert "gopher_stop_words" not in as_zh and "gopher_short_words" not in as_zh
    assert "gopher_stop_words" in as_en


def test_bad_documents_are_counted():
    texts = ["", "   \n\t  ", "。。。，，！？、", "\x00\x01 broken \ufffd\ufffd\ufffd", "a" * 30_000]
    out, stats = run_map_stage(Rules(RulesParams()), batch_of(texts, [None, None, "zh", None, "en"]))
    assert stats.docs_errored == 0 and stats.docs_dropped == 5
    assert stats.dropped_by_reason["gopher_empty"] == 1


def test_remove_lines_rewrites_to_kept_lines():
    st = Rules(
        RulesParams(
            c4_quality={"remove_lines": True},
            gopher_quality=None,
            gopher_repetition=None,
            fineweb_quality=None,
            internlm2=None,
            c4_badwords=None,
        )
    )
    lines = [f"This is sentence number {i} of a long and proper paragraph." for i in range(6)]
    text = "\n".join(lines[:3] + ["Share on Facebook", "We use cookies to improve this site."] + lines[3:])
    out, _ = run_map_stage(st, batch_of([text]))
    assert out.column("text")[0].as_py() == "\n".join(lines)


def test_c4_badwords_is_off_by_default():
    texts = [PAGES[i]["text"] for i in sorted(PAGES)[:60]]
    kept = [t for t, failed in zip(texts, failed_rules(Rules(RulesParams()), texts, "en")) if not failed]
    named = [t.replace("\n", "\nDick Turner chaired the meeting that day.\n", 1) for t in kept[:5]]
    assert "c4_badwords" not in rule_names(RulesParams()) and len(named) == 5
    assert failed_rules(Rules(RulesParams(c4_badwords={})), named, "en") == [["c4_badwords"]] * 5
    assert failed_rules(Rules(RulesParams()), named, "en") == [[]] * 5


def test_config_validation(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "x"}\n')
    base = {"input": {"paths": [str(tmp_path / "a.jsonl")], "format": "jsonl"}}
    job = validate({**base, "stages": [{"stage": "rules", "c4_paragraph": {}, "internlm2": None}]}, base=tmp_path)
    assert job.stages[0].params.c4_paragraph.min_paragraphs == 3 and job.stages[0].params.internlm2 is None
    with pytest.raises(ValueError, match="unknown key"):
        validate({**base, "stages": [{"stage": "rules", "gopher_quality": {"min_words": 3}}]}, base=tmp_path)
