"""What a runner is: the three things `run()` asks of it, whatever executes the work."""

from __future__ import annotations

from typing import Protocol

from refinery.pipeline.plan import Segment
from refinery.pipeline.stage import GlobalStage
from refinery.pipeline.stats import StageFigures


class Runner(Protocol):
    def map_units(self, segment: Segment, pending: list[tuple[int, str]]) -> None:
        """Run a segment's map stages over the pending (unit, path) pairs: each unit's kept
        documents, partial statistics and completion marker written (`execute.process_unit`)."""

    def resolve(self, stage: GlobalStage, parts: list[str]) -> StageFigures | None:
        """A global stage over the previous segment's parts: signatures, the stage's resolve on
        this runner's engine, the resolution written per unit; returns the stage's figures."""

    def close(self) -> None:
        """Release workers, pools and clusters started for the run."""
