"""The decontaminate stage: benchmark items quoted in documents are found however they are cased,
punctuated or spaced, clean text is kept, and the decisions are the same on every runner and
with the run directory on S3."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from funnel_checks import check_invariants

from refinery.pipeline.config import ConfigError, validate
from refinery.pipeline.report import render
from refinery.pipeline.run import run
from refinery.pipeline.rundir import RunDir
from refinery.pipeline.stage import run_map_stage
from refinery.pipeline.stats import EXAMPLES_PER_REASON
from refinery.stages.decontaminate import Decontaminate
from refinery.stages.dedup.text import shingle_hash, shingle_hashes, shingles, words

PAGES = Path(__file__).resolve().parent / "data" / "web" / "extracted.jsonl.gz"


def pages() -> list[str]:
    with gzip.open(PAGES, "rt") as fh:
        return [json.loads(line)["text"] for line in fh]


def sentences(text: str, least: int = 20) -> list[str]:
    """The sentences of a page with at least `least` words."""
    found = [s.strip() for s in text.replace("\n", " ").split(". ")]
    return [s for s in found if len(s.split()) >= least]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def stage_for(tmp_path: Path, benchmarks: list[Path], **params) -> Decontaminate:
    """A stage prepared (index built) and set up as a worker would have it."""
    job = validate(
        {
            "input": {"paths": [str(PAGES)], "format": "jsonl"},
            "stages": [{"stage": "decontaminate", "benchmarks": [str(b) for b in benchmarks], **params}],
        }
    )
    stage = job.build_stages()[0]
    stage.prepare(RunDir(tmp_path / "run"))
    stage.setup()
    return stage


def judge(stage: Decontaminate, texts: list[str]):
    n = len(texts)
    batch = pa.RecordBatch.from_pydict(
        {"id": [f"d{i}" for i in range(n)], "text": pa.array(texts, pa.large_string()), "url": [None] * n}
    )
    return run_map_stage(stage, batch)


@pytest.fixture(scope="module")
def corpus():
    """Benchmark items drawn from half of the real pages; the other half is clean text, less the
    pages that truly quote an item (two pages of one blog), found by the string reference path."""
    texts = pages()
    items, others = [], []
    for i, text in enumerate(texts):
        found = sentences(text)
        if i % 2 == 0 and found:
            items.append(found[len(found) // 2])
        elif i % 2:
            others.append(text)
    quoted = {s for item in items for s in shingles(item, 13)}
    clean = [text for text in others if quoted.isdisjoint(shingles(text, 13))]
    assert len(others) - len(clean) == 1
    return items, clean


def test_wide_hashes_match_the_scalar_reference():
    text = "Ａ Full-width, MIXED case: the quick brown fox jumps over the lazy dog; 東京は晴れ"
    found, offsets = shingle_hashes(pa.array([text]), 5, bits=64)
    assert found.dtype == np.uint64 and offsets.tolist() == [0, len(found)]
    assert found.tolist() == [shingle_hash(s, bits=64) for s in shingles(text, 5)]
    assert (found >> np.uint64(32)).tolist() == shingle_hashes(pa.array([text]), 5)[0].tolist()


def test_planted_items_are_found_in_every_spelling(tmp_path, corpus):
    items, clean = corpus
    bench = write_jsonl(tmp_path / "reading.jsonl", [{"question": q, "answer": "yes"} for q in items])
    stage = stage_for(tmp_path, [bench])
    spellings = [
        str.upper,
        lambda s: s.replace(" ", "  \n "),
        lambda s: s.replace(" ", ", "),
        lambda s: s.translate({ord(c): ord(c) + 0xFEE0 for c in "abcdefghij"}),
    ]  # full-width letters
    planted = [
        f"{host[:600]} {spell(item)} {host[600:1200]}"
        for k, (item, host) in enumerate(zip(items, clean))
        for spell in spellings[k % 4 : k % 4 + 1]
    ]
    kept, stats = judge(stage, planted + clean)
    assert len(planted) >= 30
    assert stats.dropped_by_reason == {"contaminated": len(planted)}
    assert set(kept.column("id").to_pylist()) == {f"d{i}" for i in range(len(planted), len(planted) + len(clean))}
    assert stats.extra == {"contaminated:reading.jsonl": len(planted)}
    span = stats.examples["contaminated_span"][0]["text"]
    assert span.startswith("[reading.jsonl] …") and len(span.split()) == 1 + 13


def test_shorter_overlaps_and_too_few_matches_are_kept(tmp_path, corpus):
    items, clean = corpus
    bench = write_jsonl(tmp_path / "b.jsonl", [{"text": items[0]}, {"text": items[1]}])
    twelve = " ".join(words(items[0])[:12])  # normalized words: "We’d" is two
    _, stats = judge(stage_for(tmp_path / "a", [bench]), [f"{clean[0][:500]} {twelve} {clean[1][:500]}"])
    assert stats.docs_kept == 1
    fourteen = " ".join(words(items[0])[:14])  # two 13-grams
    stage = stage_for(tmp_path / "b", [bench], min_matches=3)
    out, stats = judge(stage, [f"{clean[0][:500]} {fourteen}", f"{clean[0][:500]} {items[1]}"])
    assert out.column("id").to_pylist() == ["d0"] and out.column("contamination_ngrams").to_pylist() == [2]


def test_every_string_of_a_row_and_their_join_are_indexed(tmp_path):
    rows = [
        {
            "q": "Which planet is known as the red planet in the night sky",
            "choices": [
                {"label": "A", "text": "Mars, the fourth planet from the sun and the second smallest planet of all"},
                "Venus",
            ],
            "answer": 0,
        },
        {"q": "Too short to find", "a": "No"},
    ]
    bench = write_jsonl(tmp_path / "nested.jsonl", rows)
    stage = stage_for(tmp_path, [bench])
    prepared = stage.prepare(RunDir(tmp_path / "run"))["extra"]  # read back from the built index
    assert prepared["benchmark_rows"] == 2 and prepared["benchmark_rows_too_short"] == 1
    docs = [
        "Quiz night! mars the fourth planet from the sun and the second smallest planet of all, they said.",
        "which planet is known as the red planet in the night sky A Mars",  # question, then the next field
        "Which planet is known as the red planet? Too short to find. No.",
    ]
    out, stats = judge(stage, docs)
    assert stats.failed_by_rule == {"contaminated": 2} and out.column("id").to_pylist() == ["d2"]


def test_cjk_items_match_by_characters(tmp_path):
    item = "人人生而自由，在尊严和权利上一律平等。他们赋有理性和良心，并应以兄弟关系的精神相对待。"
    bench = write_jsonl(tmp_path / "udhr.jsonl", [{"text": item}])
    out, stats = judge(
        stage_for(tmp_path, [bench]),
        [f"世界人权宣言第一条：{item[:20]}……", "今天天气很好，我们去公园散步吧，然后一起吃午饭。"],
    )
    assert stats.dropped_by_reason == {"contaminated": 1} and out.column("id").to_pylist() == ["d1"]


def test_annotate_only_names_the_benchmarks(tmp_path, corpus):
    items, clean = corpus
    a = write_jsonl(tmp_path / "a.jsonl", [{"text": items[0]}])
    b = tmp_path / "b.parquet"
    pq.write_table(pa.table({"passage": [items[0], items[1]]}), b)
    stage = stage_for(tmp_path, [a, b], annotate_only=True)
    out, stats = judge(stage, [items[0], items[1], clean[0]])
    assert stats.docs_kept == 3 and stats.docs_dropped == 0
    assert out.column("contamination_benchmarks").to_pylist() == ["a.jsonl,b.parquet", "b.parquet", None]
    assert out.column("decontaminate_reason").to_pylist() == ["contaminated", "contaminated", None]
    assert stats.extra == {"contaminated:a.jsonl": 1, "contaminated:b.parquet": 2}


def test_config_errors(tmp_path):
    def check(benchmarks, match):
        with pytest.raises(ConfigError, match=match):
            validate(
                {
                    "input": {"paths": [str(PAGES)], "format": "jsonl"},
                    "stages": [{"stage": "decontaminate", "benchmarks": benchmarks}],
                }
            )

    check([str(tmp_path / "none*.jsonl")], "matches no file")
    (tmp_path / "bad.jsonl").write_text('{"q": "fine"}\n{"q": broken\n')
    check([str(tmp_path / "bad.jsonl")], r"bad.jsonl:2: not JSON")
    (tmp_path / "items.csv").write_text("q\n")
    check([str(tmp_path / "items.csv")], "a benchmark is a")
    check([], "at least 1")


@pytest.mark.parametrize("runner", ["local", "spark", "ray"])
def test_runners_agree(runner, tmp_path, runner_options, corpus):
    items, clean = corpus
    bench = write_jsonl(tmp_path / "reading.jsonl", [{"question": q} for q in items[:10]])
    rows = [{"id": f"c{i:02d}", "text": text} for i, text in enumerate(clean[:30])]
    rows += [{"id": f"p{i:02d}", "text": f"{clean[i][:400]} {item.lower()}"} for i, item in enumerate(items[:10])]
    data = write_jsonl(tmp_path / "in.jsonl", rows)
    job = validate(
        {
            "input": {"paths": [str(data)], "format": "jsonl"},
            "stages": [{"stage": "decontaminate", "benchmarks": [str(bench)]}],
        }
    )
    stats = [s.to_dict() for s in run(job, tmp_path / "run", runner=runner, **runner_options(runner, 2))]
    check_invariants(stats)
    assert stats[1]["dropped_by_reason"] == {"contaminated": 10}
    assert stats[1]["extra"]["benchmark_rows"] == 10 and stats[1]["extra"]["contaminated:reading.jsonl"] == 10
    kept = pq.read_table(tmp_path / "run" / "docs").column("id").to_pylist()
    assert sorted(kept) == [f"c{i:02d}" for i in range(30)]
    page = render(tmp_path / "run")  # drops per benchmark and the shared n-grams in the report
    assert "contaminated:reading.jsonl" in page and page.count("[reading.jsonl] …") == EXAMPLES_PER_REASON


def test_run_directory_and_benchmarks_on_s3(tmp_path, s3, corpus):
    """The index is written to and read from the object store by spawned workers; a rerun keeps it."""
    items, clean = corpus
    bucket = s3.bucket("decont")
    s3.client().put_object(
        Bucket="decont",
        Key="evals/reading.jsonl",
        Body="".join(json.dumps({"q": q}) + "\n" for q in items[:5]).encode(),
    )
    rows = [{"id": f"d{i}", "text": f"{text[:300]} {items[i] if i < 5 else ''}"} for i, text in enumerate(clean[:12])]
    data = write_jsonl(tmp_path / "in.jsonl", rows)
    job = validate(
        {
            "input": {"paths": [str(data)], "format": "jsonl"},
            "workers": 2,
            "stages": [{"stage": "decontaminate", "benchmarks": [f"s3://{bucket}/evals/*.jsonl"]}],
        }
    )
    out = f"s3://{bucket}/run"
    stats = [s.to_dict() for s in run(job, out, runner="local")]
    check_invariants(stats)
    assert stats[1]["dropped_by_reason"] == {"contaminated": 5}
    key = "run/_work/decontaminate.index.arrow"
    first = s3.client().head_object(Bucket="decont", Key=key)["LastModified"]
    assert [s.to_dict() for s in run(job, out, runner="local")][1]["docs_dropped"] == 5
    assert s3.client().head_object(Bucket="decont", Key=key)["LastModified"] == first
    assert os.environ["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1")
