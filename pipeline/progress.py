"""Live progress of a run: a bar on a terminal, plain log lines elsewhere.

Progress is read from what workers already write: the partial statistics of every stage (one
file per chunk, each read once) and the completion markers. So it is the same for every runner,
needs no channel back from workers, and moves within a long input file, not only between files.

Each line gives the documents and bytes read so far, the share of the segment's input done and
an ETA, and the stage that has taken the most time. The share done weighs each unit by its size
on storage: a finished unit counts whole, a unit in progress by the bytes its chunks have read,
scaled by the ratio of storage size to bytes read that finished units showed (before any has
finished: 1 for plain files, 4 bytes read per stored byte for compressed ones).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time

from refinery.pipeline.rundir import PARTS, RunDir
from refinery.pipeline.storage import list_folders

log = logging.getLogger("refinery")
_CHUNK_PART = re.compile(r"s(\d+)-(\d{6})-\d{6}\.json$")
COMPRESSED = (".gz", ".zst", ".bz2", ".xz")
COMPRESSION_GUESS = 4.0


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    def __init__(
        self,
        run: RunDir,
        segment: int,
        first_stage: str,
        units: dict[int, str],
        sizes: dict[int, int],
        interval: float | None = None,
    ):
        """`units`: the pending units (number -> path); `sizes`: their sizes on storage."""
        self.run, self.segment, self.first_stage = run, segment, first_stage
        self.units, self.sizes = units, sizes
        self.total = len(units)
        self.tty = sys.stderr.isatty()
        self.interval = interval or (0.5 if self.tty else 10.0)
        # partial statistics read so far: name -> (stage, unit, docs_in, bytes_in, seconds)
        self.seen: dict[str, tuple[str, int, int, int, float]] = {}
        self.start = time.monotonic()
        self.stop_event = threading.Event()
        self.bar = None
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, desc=f"segment {segment}", unit="unit", dynamic_ncols=True)
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "Progress":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join()
        self._show(final=True)
        if self.bar is not None:
            self.bar.close()

    def _scan(self) -> None:
        for stage in list_folders(self.run.fs, self.run.path(PARTS)):
            for name in self.run.names(f"{PARTS}/{stage}"):
                found = _CHUNK_PART.search(name)
                if name in self.seen or found is None or int(found.group(1)) != self.segment:
                    continue
                try:
                    data = json.loads(self.run.read_text(name))
                except (OSError, ValueError):
                    continue
                self.seen[name] = (
                    stage,
                    int(found.group(2)),
                    data["docs_in"],
                    data["bytes_in"],
                    data.get("seconds", 0.0),
                )

    def _done_fraction(self, done: set[int]) -> float:
        read: dict[int, int] = {}
        for stage, unit, _, nbytes, _ in self.seen.values():
            if stage == self.first_stage and unit in self.units:
                read[unit] = read.get(unit, 0) + nbytes
        stored = sum(self.sizes[u] for u in done)
        were_read = sum(read.get(u, 0) for u in done)
        total = sum(self.sizes.values()) or 1
        progress: float = stored
        for unit in set(read) - done:
            if were_read:
                ratio = stored / were_read
            else:
                ratio = 1 / COMPRESSION_GUESS if self.units[unit].endswith(COMPRESSED) else 1.0
            progress += min(self.sizes[unit], read[unit] * ratio)
        return min(progress / total, 1.0)

    def line(self) -> str:
        """The progress line: units, documents, bytes per second, share done, ETA, slowest stage."""
        self._scan()
        done = self.run.done_units(self.segment) & set(self.units)
        docs = sum(d for stage, _, d, _, _ in self.seen.values() if stage == self.first_stage)
        nbytes = sum(b for stage, _, _, b, _ in self.seen.values() if stage == self.first_stage)
        elapsed = max(time.monotonic() - self.start, 1e-9)
        fraction = self._done_fraction(done)
        text = f"{len(done)}/{self.total} units, {docs:,} docs, {nbytes / elapsed / 1e6:.1f} MB/s, {fraction:.0%} done"
        if 0 < fraction < 1:
            text += f", ETA {duration(elapsed * (1 - fraction) / fraction)}"
        seconds: dict[str, float] = {}
        for stage, _, _, _, spent in self.seen.values():
            seconds[stage] = seconds.get(stage, 0.0) + spent
        if sum(seconds.values()) > 0:
            slowest = max(seconds, key=seconds.__getitem__)
            text += f"; slowest stage: {slowest} ({seconds[slowest] / sum(seconds.values()):.0%} of stage time)"
        return text

    def _show(self, final: bool = False) -> None:
        text = self.line()
        if self.bar is not None:
            self.bar.n = len(self.run.done_units(self.segment) & set(self.units))
            self.bar.set_postfix_str(text.split(", ", 1)[1])
        else:
            log.info("segment %d: %s", self.segment, text)

    def _loop(self) -> None:
        while not self.stop_event.wait(self.interval):
            self._show()
