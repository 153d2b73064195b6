"""Local, Ray and Spark resolve the same signatures to the same clusters and kept ids."""
from __future__ import annotations

import pytest

from refinery.stages.dedup import deduplicate
from tests.test_dedup import sms_table


@pytest.fixture(scope="module")
def spark():
    pyspark = pytest.importorskip("pyspark.sql")
    session = (
        pyspark.SparkSession.builder.master("local[2]")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    yield session
    session.stop()


@pytest.fixture(scope="module")
def ray_context():
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


@pytest.mark.parametrize("params", [{"method": "minhash"}, {"method": "exact"}])
def test_spark_equals_local(spark, params):
    table = sms_table()
    local = deduplicate(table, **params)
    assert local.num_rows > 0
    assert deduplicate(table, engine="spark", spark=spark, **params).equals(local)


def test_ray_equals_local(ray_context):
    table = sms_table()
    local = deduplicate(table, method="minhash")
    assert local.num_rows > 0
    assert deduplicate(table, engine="ray", partitions=2, method="minhash").equals(local)
