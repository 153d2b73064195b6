"""The run directory (DESIGN.md "Run directory"): where outputs, partial stats and markers live.

Every file is written atomically (temporary name, then rename), so a killed run never leaves a
half-written part that a rerun would trust.
"""
from __future__ import annotations

import glob
import json
import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from refinery.pipeline.stats import StageStats


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_parquet(path: str | os.PathLike, table: pa.Table | pa.RecordBatch) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)


class RunDir:
    """Paths of one run. Units are numbered per segment: segment 0 reads the input files,
    a later segment reads the previous segment's parts after a global stage."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    @property
    def docs(self) -> Path:
        return self.root / "docs"

    @property
    def stats(self) -> Path:
        return self.root / "stats"

    @property
    def shards(self) -> Path:
        return self.root / "shards"

    @property
    def job(self) -> Path:
        return self.root / "job.yaml"

    def segment_output(self, segment: int, last: bool) -> Path:
        return self.docs if last else self.root / "_work" / f"s{segment}"

    def resolution(self, stage: str) -> Path:
        return self.root / "_work" / f"{stage}.resolution.parquet"

    def part_path(self, out_dir: Path, unit: int, chunk: int) -> Path:
        return out_dir / f"part-{unit:06d}-{chunk:06d}.parquet"

    def route_part(self, route: str, segment: int, unit: int, chunk: int) -> Path:
        return self.root / "routes" / route / f"part-s{segment}-{unit:06d}-{chunk:06d}.parquet"

    def stats_part(self, segment: int, stage: str, unit: int, chunk: int) -> Path:
        return self.root / "_parts" / stage / f"s{segment}-{unit:06d}-{chunk:06d}.json"

    def marker(self, segment: int, unit: int) -> Path:
        return self.root / "_done" / f"s{segment}-{unit:06d}"

    def is_done(self, segment: int, unit: int) -> bool:
        return self.marker(segment, unit).exists()

    def mark_done(self, segment: int, unit: int, source: str) -> None:
        atomic_write_text(self.marker(segment, unit), source + "\n")

    def clear_unit(self, segment: int, unit: int, out_dir: Path) -> None:
        """Remove whatever an interrupted attempt at this unit left behind."""
        for path in glob.glob(str(out_dir / f"part-{unit:06d}-*.parquet")):
            os.remove(path)
        for path in glob.glob(str(self.root / "_parts" / "*" / f"s{segment}-{unit:06d}-*.json")):
            os.remove(path)
        for path in glob.glob(str(self.root / "routes" / "*" / f"part-s{segment}-{unit:06d}-*.parquet")):
            os.remove(path)

    def write_stats_part(self, segment: int, unit: int, chunk: int, stats: StageStats) -> None:
        if stats.docs_in:
            atomic_write_text(self.stats_part(segment, stats.stage, unit, chunk), stats.to_json())

    def read_stats_parts(self, stage: str) -> list[StageStats]:
        folder = self.root / "_parts" / stage
        return [StageStats.from_dict(json.loads(p.read_text())) for p in sorted(folder.glob("*.json"))]
