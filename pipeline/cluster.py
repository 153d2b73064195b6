"""Joining a Ray cluster, or starting a private embedded one: for the pipeline's Ray runner and
the evaluator alike."""

from __future__ import annotations

import logging
from typing import TypedDict


class _InitOptions(TypedDict):
    log_to_driver: bool
    logging_level: int


def connect(address: str | None, cpus: int | None) -> bool:
    """Join the Ray cluster at `address`, or start a private embedded Ray with `cpus` CPUs; an
    already initialized Ray is used as it is. True when it was started here (to shut down)."""
    import ray

    if ray.is_initialized():
        return False
    kwargs: _InitOptions = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address:
        ray.init(address=address, **kwargs)
        return False
    # "local" always starts a private instance: an address file left by another (or a crashed)
    # Ray on this machine is never joined by accident.
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, **kwargs)
    return True
