"""Shared fixtures: the repo root, fixture data, an embedded Ray started once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def spine_data() -> Path:
    return DATA / "spine"


@pytest.fixture(scope="session")
def ray_local():
    """One embedded Ray for the whole session (runners reuse an initialized Ray)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def one_thread():
    """Training subprocesses run with OMP_NUM_THREADS=1; in-process runs must reduce in the same order."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def runner_options(request):
    """`runner_options(runner, workers)`: what `run` takes to run on that runner in a test:
    local worker processes, the session's Spark, or the session's embedded Ray."""

    def options(runner: str, workers: int = 1) -> dict:
        if runner == "spark":
            return {"spark": request.getfixturevalue("spark")}
        if runner == "ray":
            request.getfixturevalue("ray_local")
            return {}
        return {"workers": workers}

    return options


@pytest.fixture(scope="session")
def spark():
    """One local Spark session (local[2]) for the whole session."""
    from refinery.pipeline.runners.spark_runner import spark_session

    session = spark_session("local[2]", {"spark.sql.shuffle.partitions": "4"})
    yield session
    session.stop()


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """One S3 server (moto) on 127.0.0.1 for the whole session, its endpoint and test
    credentials in the environment, where pyarrow, boto3 and the runners' workers read them."""
    pytest.importorskip("moto.server")
    from services import S3Server

    server = S3Server(tmp_path_factory.mktemp("s3"))
    saved = {key: os.environ.get(key) for key in server.env}
    os.environ.update(server.env)
    yield server
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.stop()


@pytest.fixture(autouse=True)
def _no_ray_address(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    yield


def pytest_configure(config):
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
