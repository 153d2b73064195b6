"""Local, Ray and Spark resolve the same signatures to the same clusters and kept ids.

One Spark session (`spark`) and one embedded Ray (`ray_local`) serve the whole test session;
the inputs are the small SMS fixture, whose clusters include chains that need several
large-star/small-star rounds."""

from __future__ import annotations

import pytest
from dedup_data import sms_table

from refinery.stages.dedup import deduplicate

CASES = [{"method": "minhash"}, {"method": "minhash", "verify": True}, {"method": "exact"}]


@pytest.fixture(scope="module")
def table():
    return sms_table()


@pytest.mark.slow
@pytest.mark.parametrize("params", CASES, ids=["minhash", "verify", "exact"])
def test_spark_equals_local(spark, table, params):
    local = deduplicate(table, **params)
    assert local.num_rows > 0
    assert deduplicate(table, engine="spark", spark=spark, **params).equals(local)


@pytest.mark.slow
@pytest.mark.parametrize("params", CASES[:2], ids=["minhash", "verify"])
def test_ray_equals_local(ray_local, table, params):
    local = deduplicate(table, **params)
    assert local.num_rows > 0
    assert deduplicate(table, engine="ray", partitions=2, **params).equals(local)
