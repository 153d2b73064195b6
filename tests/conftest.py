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


@pytest.fixture(scope="session")
def spark():
    """One local Spark session (local[2]) for the whole session."""
    from refinery.pipeline.runners.spark_runner import spark_session

    session = spark_session("local[2]", {"spark.sql.shuffle.partitions": "4"})
    yield session
    session.stop()


@pytest.fixture(autouse=True)
def _no_ray_address(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    yield


def pytest_configure(config):
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
