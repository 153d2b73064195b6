"""The run directory (docs/architecture.md, "The run directory"): the one place that knows a run's layout and
the only code that writes into it.

A run directory is a local path or any URI `refinery.pipeline.storage` reaches (`s3://`,
`gs://`, `hdfs://`, ...); the nodes of a cluster share nothing else. Every name below is relative
to the run's root, every write is atomic (`storage.atomic_write`), and completion markers are
written last, so a killed run never leaves a half-written file that a rerun would trust.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
from typing import cast

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from refinery.pipeline.stats import StageStats
from refinery.pipeline.storage import StorageError, atomic_write, filesystem, is_temporary, list_files, list_folders

DOCS, STATS, SHARDS, ROUTES, PARTS, DONE, WORK = "docs", "stats", "shards", "routes", "_parts", "_done", "_work"
JOB = "job.yaml"
REPORT = f"{STATS}/report.html"
# What a unit's files are named after: the unit number in a name, per folder kind.
_UNIT_IN = {
    "part": re.compile(r"part-(?:s\d+-)?(\d{6})-\d{6}\."),
    "stats": re.compile(r"s(\d+)-(\d{6})-\d{6}\.json$"),
    "shard": re.compile(r"shard-(\d{6})-\d{6}-\d{3}\.arrow$"),
}


def parquet_bytes(table: pa.Table | pa.RecordBatch) -> bytes:
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


class RunDir:
    """Paths, reads and atomic writes of one run. Units are numbered per segment: segment 0
    reads the input files, a later segment reads the previous segment's parts after a global
    stage."""

    def __init__(self, root: str | os.PathLike[str]):
        self.uri = str(root)
        self.fs, self.base = filesystem(self.uri)
        self.local = isinstance(self.fs, pafs.LocalFileSystem)

    def __str__(self) -> str:
        return self.uri

    # --- reading and writing by name --------------------------------------------------------

    def path(self, name: str = "") -> str:
        """The filesystem path of a name (a local path on a local disk)."""
        return f"{self.base.rstrip('/')}/{name}" if name else self.base

    def location(self, name: str = "") -> str:
        """A name as a path or URI anyone can open (for messages, and for readers and the loader)."""
        if self.local:
            return self.path(name)
        return f"{self.uri.rstrip('/')}/{name}" if name else self.uri

    def write_bytes(self, name: str, data: bytes) -> None:
        atomic_write(self.fs, self.path(name), data)

    def write_text(self, name: str, text: str) -> None:
        self.write_bytes(name, text.encode())

    def write_parquet(self, name: str, table: pa.Table | pa.RecordBatch) -> None:
        self.write_bytes(name, parquet_bytes(table))

    def read_bytes(self, name: str) -> bytes:
        with self.fs.open_input_stream(self.path(name)) as fh:
            return cast(bytes, fh.read())

    def read_text(self, name: str) -> str:
        return self.read_bytes(name).decode()

    def open_parquet(self, name: str) -> pq.ParquetFile:
        return pq.ParquetFile(self.fs.open_input_file(self.path(name)))

    def read_parquet(self, name: str) -> pa.Table:
        return pq.read_table(self.path(name), filesystem=self.fs)

    def exists(self, name: str) -> bool:
        return cast(bool, self.fs.get_file_info(self.path(name)).type == pafs.FileType.File)

    def names(self, folder: str) -> list[str]:
        """The files of a folder of the run, as names relative to the root, sorted."""
        return [f"{folder}/{i.base_name}" for i in list_files(self.fs, self.path(folder))]

    def mtimes(self, folder: str) -> dict[str, float]:
        """The files of a folder by name, with their modification times (one listing)."""
        return {f"{folder}/{i.base_name}": i.mtime.timestamp() for i in list_files(self.fs, self.path(folder))}

    def remove(self, names: list[str]) -> None:
        for name in names:
            self.fs.delete_file(self.path(name))

    def remove_temporaries(self) -> int:
        """Delete the temporary files of writes that a killed attempt never finished; returns
        how many. Only local disks have them: an object store shows finished uploads only."""
        if not self.local:
            return 0
        infos = self.fs.get_file_info(pafs.FileSelector(self.base, recursive=True, allow_not_found=True))
        found = [i for i in infos if is_temporary(i.base_name)]
        for info in found:
            if info.type == pafs.FileType.Directory:
                self.fs.delete_dir(info.path)
            else:
                self.fs.delete_file(info.path)
        return len(found)

    # --- the layout -------------------------------------------------------------------------

    job = JOB
    docs = DOCS
    shards = SHARDS

    def stats_file(self, stage: str) -> str:
        return f"{STATS}/{stage}.json"

    def segment_output(self, segment: int, last: bool) -> str:
        return DOCS if last else f"{WORK}/s{segment}"

    def part_name(self, folder: str, unit: int, chunk: int) -> str:
        return f"{folder}/part-{unit:06d}-{chunk:06d}.parquet"

    def parts(self, folder: str) -> list[str]:
        return [n for n in self.names(folder) if n.endswith(".parquet")]

    def route_part(self, route: str, segment: int, unit: int, chunk: int) -> str:
        return f"{ROUTES}/{route}/part-s{segment}-{unit:06d}-{chunk:06d}.parquet"

    def stats_part(self, segment: int, stage: str, unit: int, chunk: int) -> str:
        return f"{PARTS}/{stage}/s{segment}-{unit:06d}-{chunk:06d}.json"

    def resolve_stats(self, stage: str) -> str:
        return f"{PARTS}/{stage}/resolve.json"

    def prepare_stats(self, stage: str) -> str:
        return f"{PARTS}/{stage}/prepare.json"

    def stage_index(self, stage: str) -> str:
        """What a stage prepares for every worker before the run (decontaminate's n-gram index)."""
        return f"{WORK}/{stage}.index.arrow"

    def resolution_part(self, stage: str, unit: int) -> str:
        """A global stage's decisions about the documents of one unit of the next segment."""
        return f"{WORK}/{stage}.resolution/unit-{unit:06d}.parquet"

    def clear_resolution(self, stage: str) -> None:
        """Remove the unit files of an interrupted resolve before it is run again."""
        self.remove(self.names(f"{WORK}/{stage}.resolution"))

    def resolved_marker(self, stage: str) -> str:
        return f"{DONE}/{stage}.resolved"

    def shard_name(self, unit: int, chunk: int, index: int) -> str:
        """A token shard of one chunk of the last segment, named inside `shards/`."""
        return f"shard-{unit:06d}-{chunk:06d}-{index:03d}.arrow"

    shard_manifests = f"{WORK}/shards"

    def shard_manifest_part(self, unit: int, chunk: int) -> str:
        return f"{self.shard_manifests}/part-{unit:06d}-{chunk:06d}.json"

    def marker(self, segment: int, unit: int) -> str:
        return f"{DONE}/s{segment}-{unit:06d}"

    def done_units(self, segment: int) -> set[int]:
        prefix = f"{DONE}/s{segment}-"
        return {int(n[len(prefix) :]) for n in self.names(DONE) if n.startswith(prefix)}

    def mark_done(self, segment: int, unit: int, source: str) -> None:
        self.write_text(self.marker(segment, unit), source + "\n")

    def clear_units(self, segment: int, units: set[int], out_dir: str, last: bool) -> None:
        """Remove whatever interrupted attempts at these units left behind: parts, routed
        parts, partial statistics and (last segment) token shards. Each folder is listed once."""
        if not units:
            return
        doomed = [n for n in self.parts(out_dir) if self._unit(n, "part") in units]
        for route in list_folders(self.fs, self.path(ROUTES)):
            doomed += [n for n in self.names(f"{ROUTES}/{route}") if self._unit(n, "part", segment) in units]
        for stage in list_folders(self.fs, self.path(PARTS)):
            doomed += [n for n in self.names(f"{PARTS}/{stage}") if self._unit(n, "stats", segment) in units]
        if last:
            doomed += [n for n in self.names(SHARDS) if self._unit(n, "shard") in units]
            doomed += [n for n in self.names(self.shard_manifests) if self._unit(n, "part") in units]
        self.remove(doomed)

    @staticmethod
    def _unit(name: str, kind: str, segment: int | None = None) -> int | None:
        base = name.rsplit("/", 1)[-1]
        found = _UNIT_IN[kind].match(base)
        if found is None:
            return None
        if kind == "stats":
            return int(found.group(2)) if int(found.group(1)) == segment else None
        if segment is not None and not base.startswith(f"part-s{segment}-"):  # routed parts name their segment
            return None
        return int(found.group(1))

    def write_stats_part(self, segment: int, unit: int, chunk: int, stats: StageStats) -> None:
        if stats.docs_in:
            self.write_text(self.stats_part(segment, stats.stage, unit, chunk), stats.to_json())

    def read_stats_parts(self, stage: str) -> list[StageStats]:
        return [
            StageStats.from_dict(json.loads(self.read_text(n)))
            for n in self.names(f"{PARTS}/{stage}")
            if n.endswith(".json")
        ]


def open_existing_run(uri: str) -> RunDir | None:
    """The run directory at `uri` for reading, or None after saying on stderr why it is not one."""
    try:
        run = RunDir(uri)
        if run.exists(JOB):
            return run
        why = "not a run directory (no job.yaml)"
    except (StorageError, OSError) as err:
        why = str(err)
    print(f"{uri}: {why}", file=sys.stderr)
    return None
