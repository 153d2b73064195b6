"""A real Ray head on 127.0.0.1 with token authentication: submit, follow and inspect a job."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from funnel_checks import check_invariants
from services import RayHead

from refinery.pipeline import service
from refinery.pipeline.cli import main as cli
from refinery.pipeline.config import load_job
from refinery.pipeline.funnel import load_stats
from refinery.pipeline.run import run

pytest.importorskip("aiohttp_cors", reason="the Ray dashboard and Jobs API need ray[default]")

JOB_TIMEOUT = 180

JOB = """
input: {paths: ["data/*.jsonl*"], format: jsonl, batch_bytes: 50000}
stages:
  - {stage: normalize}
  - {stage: length, min_words: 12}
"""


@pytest.fixture(scope="module")
def head():
    root = Path(tempfile.mkdtemp(prefix="rh", dir="/tmp"))  # short: Ray's socket paths are length-limited
    h = RayHead(root)
    try:
        h.wait_ready()
        yield h
    finally:
        h.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def job_file(tmp_path, spine_data):
    (tmp_path / "data").mkdir()
    for name in ("inaugural-a.jsonl", "inaugural-b.jsonl.gz", "bad-lines.jsonl"):
        shutil.copy(spine_data / name, tmp_path / "data" / name)
    path = tmp_path / "job.yaml"
    path.write_text(JOB)
    return path


def last_line(capsys) -> str:
    return capsys.readouterr().out.strip().splitlines()[-1]


@pytest.mark.slow
def test_submit_wait_and_statistics(head, job_file, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path.parent)  # the relative input paths resolve against the config's folder
    run_dir = tmp_path / "run"
    conn = ["--address", head.address, "--token-file", str(head.token_file)]
    assert cli(["submit", str(job_file), "--out", str(run_dir), *conn]) == 0
    job_id = last_line(capsys)
    assert job_id.startswith("raysubmit_")

    assert cli(["jobs", "status", job_id, *conn, "--wait", "--timeout", str(JOB_TIMEOUT)]) == 0, service.client(
        head.address, str(head.token_file)
    ).get_job_logs(job_id)[-3000:]
    assert last_line(capsys) == "SUCCEEDED"
    assert cli(["jobs", "status", job_id, *conn]) == 0
    assert last_line(capsys) == "SUCCEEDED"

    stats = load_stats(run_dir)
    assert [s["stage"] for s in stats] == ["read", "normalize", "length"]
    assert not any(s["partial"] for s in stats)
    for s in stats:
        assert s["docs_in"] == s["docs_kept"] + s["docs_dropped"] + s["docs_errored"], s["stage"]
    assert stats[0]["errors_by_kind"]["malformed_json"] == 1
    assert stats[2]["dropped_by_reason"]["too_few_words"] > 0
    kept = pq.read_table(run_dir / "docs").sort_by("id")
    assert kept.num_rows == stats[-1]["docs_kept"] > 0

    # the cluster kept exactly what the local runner keeps
    local = tmp_path / "local"
    run(load_job(job_file), local, runner="local", workers=1)
    assert pq.read_table(local / "docs").sort_by("id").equals(kept)

    assert cli(["jobs", "logs", job_id, *conn]) == 0
    assert "too_few_words" in capsys.readouterr().out  # the driver printed the funnel
    assert cli(["jobs", "list", *conn]) == 0
    assert job_id in capsys.readouterr().out
    assert cli(["jobs", "stop", job_id, *conn]) == 0  # already finished: stays SUCCEEDED
    assert last_line(capsys) == "SUCCEEDED"


@pytest.mark.slow
def test_authentication_stays_on(head, job_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ray/auth_token to fall back on
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    assert cli(["jobs", "list", "--address", head.address]) == 1
    err = capsys.readouterr().err
    assert "Missing authentication token" in err or "Invalid authentication token" in err, err
    monkeypatch.setenv("RAY_AUTH_TOKEN", "0" * 64)
    assert cli(["submit", str(job_file), "--out", str(tmp_path / "run"), "--address", head.address]) == 1
    err = capsys.readouterr().err
    assert "Forbidden" in err or "Invalid authentication token" in err, err
    monkeypatch.setenv("RAY_AUTH_TOKEN", head.token)
    assert cli(["jobs", "list", "--address", head.address]) == 0


def test_shipped_code_imports_from_its_own_copy(tmp_path):
    staged = service.stage_code(tmp_path)
    assert (staged / "pipeline" / "__init__.py").is_file()
    assert not (staged / "tokenize" / "__init__.py").exists()
    assert not list(staged.rglob("__pycache__"))
    probe = (
        "import refinery.pipeline.cli as c, refinery.stages.langid as l, tokenize, inspect;"
        "print(c.__file__); print(l.DEFAULT_MODEL.is_file()); print(tokenize.__file__)"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[0].startswith(str(staged))
    assert out[1] == "True"
    assert "refinery" not in out[2]


def test_config_paths_are_made_portable(job_file, tmp_path):
    data = service.portable_config(job_file, ship_code=False)
    assert data["input"]["paths"] == [str(tmp_path / "data" / "*.jsonl*")]
    (tmp_path / "other.yaml").write_text(
        "input: {paths: ['s3://bucket/*.jsonl', '/abs/x.jsonl', 'missing/*.jsonl'], format: jsonl}\n"
        "output: somewhere\nstages:\n  - {stage: langid, model: models/lid.176.ftz, languages: [en]}\n"
        "  - {stage: classify, classifiers: {q: {path: data/x.ftz}}}\n"
    )
    data = service.portable_config(tmp_path / "other.yaml", ship_code=True)
    assert data["input"]["paths"] == ["s3://bucket/*.jsonl", "/abs/x.jsonl", "missing/*.jsonl"]
    assert "output" not in data
    assert data["stages"][0]["languages"] == ["en"]
    assert data["stages"][0]["model"] == "models/lid.176.ftz"  # resolves against the shipped copy
    (tmp_path / "data" / "x.ftz").write_bytes(b"model")
    data = service.portable_config(tmp_path / "other.yaml", ship_code=False)
    assert data["stages"][1]["classifiers"]["q"]["path"] == str(tmp_path / "data" / "x.ftz")  # nested paths too


def test_token_sources(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    assert service.read_token() is None
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("home-token\n")
    assert service.read_token() == "home-token"
    (tmp_path / "t").write_text("path-token")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "t"))
    assert service.read_token() == "path-token"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "env-token")
    assert service.read_token() == "env-token"
    assert service.read_token(str(tmp_path / ".ray" / "auth_token")) == "home-token"
    with pytest.raises(service.ServiceError):
        service.read_token(str(tmp_path / "nope"))


@pytest.mark.slow
def test_demo_end_to_end_submit_train_report(head, root, tmp_path, capsys, monkeypatch):
    """conf/demo.yaml submitted to the head → shards → a tiny model trains on them and conf/eval/demo.yaml scores it
    → the report shows every stage."""
    run_dir = tmp_path / "demo"
    conn = ["--address", head.address, "--token-file", str(head.token_file)]
    assert cli(["submit", str(root / "conf" / "demo.yaml"), "--out", str(run_dir), *conn]) == 0
    job_id = last_line(capsys)
    assert cli(["jobs", "status", job_id, *conn, "--wait", "--timeout", str(3 * JOB_TIMEOUT)]) == 0, service.client(
        head.address, str(head.token_file)
    ).get_job_logs(job_id)[-3000:]

    stats = load_stats(run_dir)
    names = [s["stage"] for s in stats]
    assert names == [
        "read",
        "extract",
        "langid",
        "langid_scores",
        "normalize",
        "rules",
        "pii",
        "dedup",
        "decontaminate",
        "classify",
        "longctx",
        "tokenize",
    ]
    check_invariants(stats)
    assert stats[-1]["docs_kept"] > 10
    manifest = (run_dir / "shards" / "manifest.json").read_text()
    assert '"documents"' in manifest
    selected = pq.read_table(run_dir / "routes" / "long_context")
    assert 0 < selected.num_rows < stats[-1]["docs_kept"]
    assert min(len(t) for t in selected.column("text").to_pylist()) >= 4096

    train_dir = tmp_path / "train"
    assert (
        cli(
            [
                "train",
                str(root / "conf" / "train" / "tiny.yaml"),
                "--data",
                str(run_dir / "shards"),
                "--out",
                str(train_dir),
                "--max-steps",
                "4",
            ]
        )
        == 0
    )
    steps = [line for line in (train_dir / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert len(steps) == 4
    # The shipped evaluation suite scores that checkpoint (it names the demo's run as runs/demo).
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "demo").symlink_to(run_dir)
    monkeypatch.chdir(tmp_path)
    assert cli(["eval", str(train_dir), "--suite", str(root / "conf" / "eval" / "demo.yaml")]) == 0
    evaluated = {(r["task"], r["metric"]) for r in map(json.loads, (train_dir / "eval" / "results.jsonl").open())}
    assert {("heldout", "perplexity"), ("needle", "retrieved/L256/d0.9"), ("reading", "accuracy")} <= evaluated

    report = tmp_path / "report.html"
    assert cli(["report", str(run_dir), "-o", str(report)]) == 0
    html = report.read_text()
    for name in names:
        assert f">{name}<" in html, name
