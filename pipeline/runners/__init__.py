"""Runners: the same plan executed in one process pool, on Ray Data, or on Spark."""

from __future__ import annotations

from typing import Any

from refinery.pipeline.plan import Plan
from refinery.pipeline.runners.base import Runner


def runner_for(name: str, plan: Plan, **options: Any) -> Runner:
    """The runner named `name` for the plan; `options` go to its constructor."""
    if name == "local":
        from refinery.pipeline.runners.local_runner import LocalRunner

        return LocalRunner(plan, **options)
    if name == "ray":
        from refinery.pipeline.runners.ray_runner import RayRunner

        return RayRunner(plan, **options)
    if name == "spark":
        from refinery.pipeline.runners.spark_runner import SparkRunner

        return SparkRunner(plan, **options)
    raise ValueError(f"unknown runner {name!r}")
