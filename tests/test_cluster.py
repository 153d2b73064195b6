"""refinery on a real cluster whose nodes share nothing but object storage: a Ray head and a
second node (`ray start`), and moto's S3 server, all on 127.0.0.1. The demo job reads its pages
from S3 and writes its run directory to S3; the kept documents and token shards equal the local
runner's, and the loader and the trainer stream the shards back from S3."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import yaml
from funnel_checks import check_invariants
from services import RayHead, RayNode

from refinery.loaders import TokenDataset
from refinery.pipeline import service
from refinery.pipeline.cli import main as cli
from refinery.pipeline.config import load_job
from refinery.pipeline.funnel import load_stats
from refinery.pipeline.run import run

pytest.importorskip("aiohttp_cors", reason="the Ray dashboard and Jobs API need ray[default]")

JOB_TIMEOUT = 600


def s3fs() -> pafs.S3FileSystem:
    return pafs.FileSystem.from_uri("s3://any")[0]


def files(prefix: str) -> dict[str, bytes]:
    """Every object under an S3 prefix (bucket/key...), by name relative to it."""
    fs = s3fs()
    found = fs.get_file_info(pafs.FileSelector(prefix, recursive=True, allow_not_found=True))
    out = {}
    for info in found:
        if info.type == pafs.FileType.File:
            with fs.open_input_stream(info.path) as fh:
                out[info.path[len(prefix) + 1 :]] = fh.read()
    return out


def local_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def demo_on_s3(s3, root, tmp_path_factory) -> Path:
    """conf/demo.yaml with its input pages uploaded to S3."""
    bucket = s3.bucket("pages")
    client = s3.client()
    for page in sorted((root / "data" / "sample").glob("*.warc.gz")):
        client.upload_file(str(page), bucket, f"warc/{page.name}")
    config = yaml.safe_load((root / "conf" / "demo.yaml").read_text())
    config["input"]["paths"] = [f"s3://{bucket}/warc/*.warc.gz"]
    folder = tmp_path_factory.mktemp("conf")
    for item in sorted((root / "data" / "benchmarks").glob("*.jsonl")):
        client.upload_file(str(item), bucket, f"evals/{item.name}")

    def from_root(options: dict) -> None:  # model paths as the demo writes them, relative to conf/
        for key, value in options.items():
            if isinstance(value, dict):
                from_root(value)
            elif isinstance(value, str) and value.startswith("../models/"):
                options[key] = str(root / value.removeprefix("../"))

    for stage in config["stages"]:
        if "benchmarks" in stage:
            stage["benchmarks"] = [f"s3://{bucket}/evals/*.jsonl"]
        from_root(stage)
    path = folder / "demo-s3.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def local_demo(demo_on_s3, tmp_path_factory) -> Path:
    """The same job on the local runner into a local folder: what every other run must equal."""
    out = tmp_path_factory.mktemp("local") / "run"
    run(load_job(demo_on_s3), out, runner="local", workers=2)
    return out


@pytest.fixture(scope="module")
def cluster(s3):
    """A Ray head and a second node, each with one CPU, in their own process groups; the nodes
    get the S3 endpoint and credentials from their environment, as cluster nodes do."""
    root = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))  # short: Ray's socket paths are length-limited
    head = RayHead(root, cpus=1, env=s3.env)
    node = None
    try:
        head.wait_ready()
        node = RayNode(head, root, cpus=1)
        node.wait_joined(head)
        yield head
    finally:
        for service_ in (node, head):
            if service_ is not None:
                service_.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_demo_on_two_nodes_writes_its_run_to_s3(
    cluster, s3, demo_on_s3, local_demo, root, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    s3.bucket("runs")
    conn = ["--address", cluster.address, "--token-file", str(cluster.token_file)]
    assert cluster.alive_nodes() == 2
    assert cli(["submit", str(demo_on_s3), "--out", "s3://runs/demo", *conn]) == 0
    job_id = capsys.readouterr().out.strip().splitlines()[-1]
    assert cli(["jobs", "status", job_id, *conn, "--wait", "--timeout", str(JOB_TIMEOUT)]) == 0, service.client(
        cluster.address, str(cluster.token_file)
    ).get_job_logs(job_id)[-4000:]
    assert not list(tmp_path.iterdir())  # nothing written to a local folder

    # statistics read back from the bucket: complete, every stage's in = kept + dropped + errored
    stats = load_stats("s3://runs/demo")
    assert not any(s["partial"] for s in stats)
    check_invariants(stats)
    assert stats[-1]["docs_kept"] > 10

    # the same kept documents and byte-identical token shards as the local runner
    remote = files("runs/demo")
    local = local_files(local_demo)
    for folder in ("docs/", "shards/", "routes/"):
        names = sorted(n for n in local if n.startswith(folder))
        assert names and names == sorted(n for n in remote if n.startswith(folder)), folder
        assert all(remote[n] == local[n] for n in names), folder
    assert not [n for n in remote if n.rsplit("/", 1)[-1].startswith(".")]  # no temporary objects

    # the loader and the trainer stream the shards back from S3
    streamed = [
        w["input_ids"].tolist() for w in TokenDataset("s3://runs/demo/shards", 64, seed=3, cache_dir=tmp_path / "c")
    ]
    assert streamed == [w["input_ids"].tolist() for w in TokenDataset(local_demo / "shards", 64, seed=3)]
    manifest = json.loads(remote["shards/manifest.json"])
    assert len(streamed) >= manifest["tokens"] // 65 > 0
    train = tmp_path / "train"
    assert (
        cli(
            [
                "train",
                str(root / "conf" / "train" / "tiny.yaml"),
                "--data",
                "s3://runs/demo/shards",
                "--out",
                str(train),
                "--max-steps",
                "2",
            ]
        )
        == 0
    )
    assert len([line for line in (train / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]) == 2

    # the report and the funnel come from the bucket as well
    assert cli(["stats", "s3://runs/demo"]) == 0
    assert "tokenize" in capsys.readouterr().out
    assert cli(["report", "s3://runs/demo"]) == 0
    assert b"refinery report" in files("runs/demo/stats")["report.html"]


@pytest.mark.slow
def test_spark_runner_writes_its_run_to_s3(s3, spark, demo_on_s3, local_demo, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s3.bucket("spark-runs")
    run(load_job(demo_on_s3), "s3://spark-runs/demo", runner="spark", spark=spark)
    remote, local = files("spark-runs/demo"), local_files(local_demo)
    names = sorted(n for n in local if n.startswith(("docs/", "shards/")))
    assert names == sorted(n for n in remote if n.startswith(("docs/", "shards/")))
    assert all(remote[n] == local[n] for n in names)
    assert not list(tmp_path.iterdir())


def _run(conf: Path, out: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "refinery.pipeline.cli", "run", str(conf), "--out", out, "--runner", "local"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


@pytest.mark.slow
def test_run_killed_on_s3_and_rerun_matches_uninterrupted(s3, spine_data, tmp_path):
    """SIGKILL in the middle of a job whose run directory is on S3, then the same command
    again: the kept documents, the token shards and the statistics equal an uninterrupted run."""
    bucket = s3.bucket("resume")
    lines = (spine_data / "inaugural-a.jsonl").read_text().splitlines()
    for unit in range(12):
        rows = [json.loads(line) for line in lines]
        body = "".join(json.dumps({"id": f"{unit}-{i}", "text": r["text"]}) + "\n" for i, r in enumerate(rows * 4))
        s3.client().put_object(Bucket=bucket, Key=f"in/{unit:02d}.jsonl", Body=body.encode())
    model = Path(__file__).resolve().parents[1] / "models" / "tokenizer" / "refinery-demo-8k.model"
    conf = tmp_path / "job.yaml"
    conf.write_text(
        f"input: {{paths: ['s3://{bucket}/in/*.jsonl'], format: jsonl}}\nworkers: 1\nstages:\n"
        "  - {stage: normalize}\n  - {stage: length, min_words: 20}\n  - {stage: dedup, method: exact}\n"
        f"  - {{stage: tokenize, tokenizer: {model}}}\n"
    )
    env = {**os.environ, "RAY_DISABLE_USAGE_STATS": "1"}
    proc = _run(conf, f"s3://{bucket}/killed", env)
    fs, deadline = s3fs(), time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        done = fs.get_file_info(pafs.FileSelector(f"{bucket}/killed/_done", allow_not_found=True))
        if len(done) >= 3:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert _run(conf, f"s3://{bucket}/killed", env).wait() == 0
    assert _run(conf, f"s3://{bucket}/full", env).wait() == 0

    killed, full = files(f"{bucket}/killed"), files(f"{bucket}/full")
    kept = sorted(n for n in full if n.startswith(("docs/", "shards/", "_work/")))
    assert any(n.startswith("shards/shard-") for n in kept) and any(".resolution/" in n for n in kept)
    assert kept == sorted(n for n in killed if n.startswith(("docs/", "shards/", "_work/")))
    assert all(killed[n] == full[n] for n in kept)
    for name in (n for n in full if n.startswith("stats/") and n.endswith(".json")):
        a, b = json.loads(killed[name]), json.loads(full[name])
        a.pop("seconds"), b.pop("seconds")
        assert a == b, name
    assert pq.read_table(f"{bucket}/full/docs", filesystem=fs).num_rows > 0


def test_bad_run_directories_are_one_error_before_any_work(s3, spine_data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    conf = tmp_path / "job.yaml"
    conf.write_text(
        f"input: {{paths: ['{spine_data / 'inaugural-a.jsonl'}'], format: jsonl}}\nstages: [{{stage: normalize}}]\n"
    )
    (tmp_path / "a-file").write_text("x")
    for out, why in (
        ("s3://no-such-bucket/run", "bucket 'no-such-bucket' does not exist"),
        ("nosuchscheme://x/run", "nosuchscheme://x/run"),
        ("a-file", "is a file, not a run directory"),
    ):
        assert cli(["run", str(conf), "--out", out, "--runner", "local"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("config error: --out") and why in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "job.yaml"]  # no `s3:` folder, no run
    assert cli(["stats", "s3://no-such-bucket/run"]) == 2


@pytest.mark.slow
def test_embedded_ray_ignores_a_stale_cluster_address(root, tmp_path):
    """A Ray head stopped uncleanly leaves RAY_TMPDIR/ray/ray_current_cluster behind; the demo
    on the Ray runner still starts its own private Ray instead of trying to join it."""
    ray_tmp = Path(tempfile.mkdtemp(prefix="rs", dir="/tmp"))
    try:
        (ray_tmp / "ray").mkdir()
        (ray_tmp / "ray" / "ray_current_cluster").write_text("127.0.0.1:1\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
        env.update({"RAY_TMPDIR": str(ray_tmp), "RAY_DISABLE_USAGE_STATS": "1"})
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "refinery.pipeline.cli",
                "run",
                str(root / "conf" / "demo.yaml"),
                "--out",
                str(tmp_path / "demo"),
                "--runner",
                "ray",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            out, _ = proc.communicate(timeout=JOB_TIMEOUT)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        assert proc.returncode == 0, out.decode(errors="replace")[-3000:]
        stats = load_stats(tmp_path / "demo")
        assert stats[-1]["stage"] == "tokenize" and stats[-1]["docs_kept"] > 10
    finally:
        subprocess.run(["pkill", "-KILL", "-f", str(ray_tmp)], check=False)
        shutil.rmtree(ray_tmp, ignore_errors=True)
