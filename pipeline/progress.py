"""Live progress of a run: a bar on a terminal, plain log lines elsewhere.

Progress is read from what workers already write: the partial statistics of a segment's first
stage (one file per chunk) and the completion markers. So it is the same for every runner, needs
no channel back from workers, and moves within a long input file, not only between files.
"""
from __future__ import annotations

import json
import logging
import sys
import threading
import time

from refinery.pipeline.rundir import PARTS, RunDir

log = logging.getLogger("refinery")


class Progress:
    def __init__(self, run: RunDir, segment: int, first_stage: str, units: int, interval: float | None = None):
        self.run, self.segment, self.first_stage, self.total = run, segment, first_stage, units
        self.tty = sys.stderr.isatty()
        self.interval = interval or (0.5 if self.tty else 10.0)
        self.seen: dict[str, tuple[int, int]] = {}
        self.start = time.monotonic()
        self.done_before = self._done()
        self.stop_event = threading.Event()
        self.bar = None
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=units, desc=f"segment {segment}", unit="unit", dynamic_ncols=True)
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "Progress":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        self.thread.join()
        self._show(final=True)
        if self.bar is not None:
            self.bar.close()

    def _done(self) -> int:
        return len(self.run.done_units(self.segment))

    def _scan(self) -> tuple[int, int]:
        for name in self.run.names(f"{PARTS}/{self.first_stage}"):
            if name not in self.seen and name.rsplit("/", 1)[-1].startswith(f"s{self.segment}-"):
                try:
                    data = json.loads(self.run.read_text(name))
                except (OSError, ValueError):
                    continue
                self.seen[name] = (data["docs_in"], data["bytes_in"])
        return sum(d for d, _ in self.seen.values()), sum(b for _, b in self.seen.values())

    def _show(self, final: bool = False) -> None:
        docs, nbytes = self._scan()
        units = self._done() - self.done_before
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = f"{docs:,} docs, {nbytes / elapsed / 1e6:.1f} MB/s"
        if self.bar is not None:
            self.bar.n = units
            self.bar.set_postfix_str(rate)
        elif final or units < self.total:
            log.info("segment %d: %d/%d units, %s", self.segment, units, self.total, rate)

    def _loop(self) -> None:
        while not self.stop_event.wait(self.interval):
            self._show()
