"""A job described as segments cut at its global stages, before anything runs.

Segment 0 reads the input files; each global stage (dedup) opens a new segment that reads the
previous segment's parts, applies the global decision and goes on with the next map stages.
A unit is an input file (segment 0) or a part of the previous segment. `execute.py` does the
work a plan describes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from refinery.pipeline.config import Job
from refinery.pipeline.readers import READ
from refinery.pipeline.rundir import RunDir
from refinery.pipeline.schema import CORE_SCHEMA, RAW_SCHEMA, type_name
from refinery.pipeline.stage import GlobalStage, MapStage, Stage


@dataclass
class Segment:
    index: int
    opener: GlobalStage | None
    stages: list[MapStage]
    last: bool


class Plan:
    """What a runner needs: stages in segments, the run directory and the unit lists."""

    def __init__(self, job: Job, run_dir: str | Path):
        self.job = job
        self.run = RunDir(run_dir)
        self.stages: list[Stage] = job.build_stages()
        self.segments: list[Segment] = []
        current: list[MapStage] = []
        opener: GlobalStage | None = None
        for stage in self.stages:
            if isinstance(stage, GlobalStage):
                self.segments.append(Segment(len(self.segments), opener, current, False))
                opener, current = stage, []
            elif isinstance(stage, MapStage):
                current.append(stage)
            else:
                raise TypeError(f"stage {stage.name!r} is neither a map stage nor a global stage")
        self.segments.append(Segment(len(self.segments), opener, current, True))
        self.fingerprint = hashlib.sha256(json.dumps(job.resolved(), sort_keys=True).encode()).hexdigest()

    def output_columns(self) -> dict[str, str]:
        """The columns of the kept documents and their Arrow types, known before the run starts."""
        raw = self.job.config.input.format in ("warc", "html")
        columns = {f.name: type_name(f.type) for f in (RAW_SCHEMA if raw else CORE_SCHEMA)}
        for stage in self.stages:
            for name in stage.removes:
                columns.pop(name, None)
            columns.update({name: type_name(dtype) for name, dtype in stage.added_columns().items()})
        return columns

    @property
    def stage_names(self) -> list[str]:
        return [READ] + [s.name for s in self.stages]

    def output_dir(self, segment: Segment) -> str:
        return self.run.segment_output(segment.index, segment.last)

    def parts(self, segment: Segment) -> list[str]:
        """The Parquet parts a segment has written, as names in the run directory."""
        return self.run.parts(self.output_dir(segment))

    def units(self, segment: Segment) -> list[str]:
        if segment.index == 0:
            return list(self.job.files)
        return self.parts(self.segments[segment.index - 1])
