"""The Spark runner on a standalone Spark master and worker started on 127.0.0.1 keeps the same
documents as the local runner."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from refinery.pipeline.config import load_job
from refinery.pipeline.run import run

START_TIMEOUT = 90


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def spark_class(*args: str, log: Path) -> subprocess.Popen:
    import pyspark

    home = Path(pyspark.__file__).parent
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable}
    return subprocess.Popen(
        [str(home / "bin" / "spark-class"), *args],
        env=env,
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@pytest.fixture(scope="module")
def standalone(tmp_path_factory):
    logs = tmp_path_factory.mktemp("spark-standalone")
    port, ui, worker_ui = free_port(), free_port(), free_port()
    master = spark_class(
        "org.apache.spark.deploy.master.Master",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--webui-port",
        str(ui),
        log=logs / "master.log",
    )
    worker = spark_class(
        "org.apache.spark.deploy.worker.Worker",
        f"spark://127.0.0.1:{port}",
        "--host",
        "127.0.0.1",
        "--cores",
        "2",
        "--memory",
        "2g",
        "--webui-port",
        str(worker_ui),
        "--work-dir",
        str(logs / "work"),
        log=logs / "worker.log",
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and not (
            listening(port) and "Successfully registered" in (logs / "worker.log").read_text(errors="replace")
        ):
            time.sleep(0.5)
        if not listening(port):
            pytest.fail("Spark master did not start:\n" + (logs / "master.log").read_text(errors="replace")[-2000:])
        yield f"spark://127.0.0.1:{port}", logs / "work"
    finally:
        for proc in (worker, master):
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


@pytest.mark.slow
def test_spark_standalone_cluster_keeps_what_local_keeps(standalone, spine_data, tmp_path):
    master, work_dir = standalone
    conf = tmp_path / "job.yaml"
    conf.write_text(
        f"input: {{paths: ['{spine_data}/*.jsonl*'], format: jsonl, batch_bytes: 50000}}\n"
        f"spark: {{master: '{master}', conf: {{spark.executor.memory: 1g, spark.sql.shuffle.partitions: '4'}}}}\n"
        "stages:\n  - {stage: normalize}\n  - {stage: length, min_words: 12}\n"
    )
    # its own process: one Spark context per process, and the test session may hold a local one
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "refinery.pipeline.cli",
            "run",
            str(conf),
            "--out",
            str(tmp_path / "spark"),
            "--runner",
            "spark",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "length" in done.stdout
    assert list(work_dir.glob("app-*")), "no application ran on the standalone worker"
    run(load_job(conf), tmp_path / "local", runner="local", workers=1)
    spark_docs = pq.read_table(tmp_path / "spark" / "docs").sort_by("id")
    assert spark_docs.num_rows > 0
    assert spark_docs.equals(pq.read_table(tmp_path / "local" / "docs").sort_by("id"))
