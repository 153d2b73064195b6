"""The same job gives the same kept documents and complete statistics on every runner."""

import json
import sys

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml
from funnel_checks import check_invariants

from refinery.pipeline.cli import main as cli
from refinery.pipeline.config import load_job
from refinery.pipeline.registry import known_stages
from refinery.pipeline.run import run
from refinery.pipeline.schema import type_name
from refinery.pipeline.stage import GlobalStage

JOB = """
input: {paths: ["%(data)s/*.jsonl*"], format: jsonl, batch_bytes: 50000}
stages:
  - {stage: normalize}
  - {stage: length, min_words: 12}
  - {stage: length, name: long_docs, route: short_docs, max_words: 120}
"""


class FirstOfText(GlobalStage):
    """Test global stage: among documents with the same text, keep the smallest id."""

    kind = "first_of_text"
    columns = {"dup_of": pa.string()}

    def signatures(self, batch):
        key = pc.binary_join_element_wise(batch.column("text").cast(pa.string()), "", "")
        return pa.RecordBatch.from_arrays([batch.column("id"), key], names=["id", "key"])

    @staticmethod
    def _resolve(table):
        firsts = table.group_by("key").aggregate([("id", "min")]).rename_columns(["key", "dup_of"])
        joined = table.join(firsts, "key").select(["id", "dup_of"])
        reason = pc.if_else(
            pc.equal(joined.column("id"), joined.column("dup_of")), pa.scalar(None, pa.string()), "duplicate"
        )
        return pa.table({"id": joined.column("id"), "reason": reason, "dup_of": joined.column("dup_of")})

    def resolve_local(self, signatures):
        return self._resolve(signatures)

    def resolve_ray(self, signatures):
        return signatures.groupby("key").map_groups(self._resolve, batch_format="pyarrow")

    def resolve_spark(self, signatures):
        from pyspark.sql import functions as F

        firsts = signatures.groupBy("key").agg(F.min("id").alias("dup_of"))
        joined = signatures.join(firsts, "key")
        reason = F.when(F.col("id") == F.col("dup_of"), F.lit(None).cast("string")).otherwise(F.lit("duplicate"))
        return joined.select("id", reason.alias("reason"), "dup_of")


def kept_docs(run_dir):
    table = pq.read_table(run_dir / "docs")
    return table.sort_by("id")


def routed(run_dir):
    return pq.read_table(run_dir / "routes" / "short_docs").sort_by("id")


def stats_json(run_dir, capsys):
    capsys.readouterr()
    assert cli(["stats", str(run_dir), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def job_file(tmp_path, spine_data):
    path = tmp_path / "job.yaml"
    path.write_text(JOB % {"data": spine_data})
    return path


def test_local_run_statistics_and_cli(job_file, tmp_path, capsys):
    run_dir = tmp_path / "local"
    assert cli(["run", str(job_file), "--out", str(run_dir), "--runner", "local"]) == 0
    assert "normalize" in capsys.readouterr().out
    stats = stats_json(run_dir, capsys)
    assert [s["stage"] for s in stats] == ["read", "normalize", "length", "long_docs"]
    for key in (
        "stage",
        "docs_in",
        "docs_kept",
        "docs_dropped",
        "docs_errored",
        "bytes_in",
        "bytes_kept",
        "dropped_by_reason",
        "errors_by_kind",
        "histograms",
        "examples",
    ):
        assert key in stats[0]
    check_invariants(stats)
    read = stats[0]
    # the truncated gzip ends inside a line: that cut line is the record `truncated_stream` counts
    assert read["errors_by_kind"] == {
        "empty_file": 1,
        "invalid_utf8": 1,
        "malformed_json": 1,
        "missing_text": 1,
        "not_an_object": 1,
        "truncated_stream": 1,
    }
    assert stats[2]["dropped_by_reason"]["too_few_words"] > 0
    assert sum(stats[2]["histograms"]["n_words"]["counts"]) == stats[2]["docs_in"]
    docs = kept_docs(run_dir)
    assert docs.num_rows == stats[-1]["docs_kept"]
    assert {"n_words", "n_chars", "long_docs_reason"} <= set(docs.schema.names)
    # the output schema was declared before the run started
    declared = yaml.safe_load((run_dir / "job.yaml").read_text())["output_columns"]
    assert declared == {f.name: type_name(f.type) for f in docs.schema}
    assert not any(name.startswith("_") for name in docs.schema.names)
    # a routing stage drops nothing and writes the documents it would keep to their own output
    short = routed(run_dir)
    assert 0 < short.num_rows < docs.num_rows
    assert max(short.column("n_words").to_pylist()) <= 120
    assert short.num_rows == docs.num_rows - stats[-1]["dropped_by_reason"]["too_many_words"]
    capsys.readouterr()
    assert cli(["stats", str(run_dir)]) == 0
    table = capsys.readouterr().out
    assert "long_docs" in table and "kept %" in table


def test_all_runners_keep_identical_documents_and_stats(job_file, tmp_path, ray_local, spark):
    job = load_job(job_file)
    local = run(job, tmp_path / "local", runner="local", workers=2)
    others = {
        "ray": run(job, tmp_path / "ray", runner="ray"),
        "spark": run(job, tmp_path / "spark", runner="spark", spark=spark),
    }
    for name, stats in others.items():
        assert kept_docs(tmp_path / "local").equals(kept_docs(tmp_path / name)), name
        assert routed(tmp_path / "local").equals(routed(tmp_path / name)), name
        for a, b in zip(local, stats):
            a, b = a.to_dict(), b.to_dict()
            a.pop("seconds"), b.pop("seconds")
            assert a == b, name


def test_global_stage_hook_on_all_runners(tmp_path, monkeypatch, ray_local, spark):
    import pyspark.cloudpickle
    import ray.cloudpickle

    monkeypatch.setitem(known_stages(), "first_of_text", f"{__name__}:FirstOfText")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    pyspark.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    texts = [f"paragraph number {i % 7} with enough words to pass" for i in range(40)]
    for k in range(3):
        (tmp_path / f"in{k}.jsonl").write_text(
            "".join(json.dumps({"id": f"{k}-{i:02d}", "text": t}) + "\n" for i, t in enumerate(texts[k::3]))
        )
    (tmp_path / "job.yaml").write_text(
        f"input: {{paths: ['{tmp_path}/in*.jsonl'], format: jsonl}}\n"
        "stages:\n  - {stage: normalize}\n  - {stage: first_of_text}\n  - {stage: length, min_words: 3}\n"
    )
    job = load_job(tmp_path / "job.yaml")
    stats = run(job, tmp_path / "local", runner="local", workers=1)
    run(job, tmp_path / "ray", runner="ray")
    run(job, tmp_path / "spark", runner="spark", spark=spark)
    local = kept_docs(tmp_path / "local")
    assert local.num_rows == 7
    assert local.equals(kept_docs(tmp_path / "ray"))
    assert local.equals(kept_docs(tmp_path / "spark"))
    assert local.column("id").to_pylist() == sorted(local.column("dup_of").to_pylist())
    by_name = {s.stage: s for s in stats}
    assert by_name["first_of_text"].dropped_by_reason == {"duplicate": 33}
    check_invariants([s.to_dict() for s in stats])


def test_rerun_into_a_run_of_another_job_is_refused(job_file, tmp_path, spine_data):
    run(load_job(job_file), tmp_path / "run", runner="local", workers=1)
    other = tmp_path / "other.yaml"
    other.write_text(JOB.replace("min_words: 12", "min_words: 13") % {"data": spine_data})
    from refinery.pipeline.config import ConfigError

    with pytest.raises(ConfigError):
        run(load_job(other), tmp_path / "run", runner="local", workers=1)
