"""The local runner: a process pool over units; every stage of a segment runs in the worker."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable, Iterator, Sequence, TypeVar

from refinery.pipeline.execute import process_unit, resolve_in_process, signatures_of_part
from refinery.pipeline.plan import Plan, Segment
from refinery.pipeline.stage import GlobalStage
from refinery.pipeline.stats import StageFigures

Result = TypeVar("Result")


class LocalRunner:
    def __init__(self, plan: Plan, workers: int | None = None):
        self.plan = plan
        self.workers = workers or plan.job.config.workers or os.cpu_count() or 1
        self.pool: ProcessPoolExecutor | None = None

    def _pool(self) -> ProcessPoolExecutor:
        if self.pool is None:
            self.pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        return self.pool

    def _map(self, fn: Callable[..., Result], calls: Sequence[tuple[object, ...]]) -> Iterator[Result]:
        """Results of fn over calls, in completion order; in-process when parallelism cannot help."""
        if self.workers == 1 or len(calls) == 1:
            for args in calls:
                yield fn(*args)
            return
        futures = [self._pool().submit(fn, *args) for args in calls]
        for future in as_completed(futures):
            yield future.result()

    def map_units(self, segment: Segment, pending: list[tuple[int, str]]) -> None:
        for _ in self._map(process_unit, [(self.plan, segment.index, unit, path) for unit, path in pending]):
            pass

    def resolve(self, stage: GlobalStage, parts: list[str]) -> StageFigures | None:
        calls = [(stage, self.plan.run, unit, name) for unit, name in enumerate(parts)]
        return resolve_in_process(self.plan, stage, list(self._map(signatures_of_part, calls)))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
