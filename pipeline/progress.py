"""Progress of a run: a live bar on a terminal, plain log lines elsewhere."""
from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("refinery")


class Progress:
    def __init__(self, total_units: int, label: str, log_every: float = 10.0):
        self.total = total_units
        self.label = label
        self.units = self.docs = self.bytes = 0
        self.start = self.last_log = time.monotonic()
        self.log_every = log_every
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total_units, desc=label, unit="unit", dynamic_ncols=True)

    def update(self, docs: int, nbytes: int, units: int = 1) -> None:
        self.units += units
        self.docs += docs
        self.bytes += nbytes
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = f"{self.docs:,} docs, {self.bytes / elapsed / 1e6:.1f} MB/s"
        if self.bar is not None:
            self.bar.update(units)
            self.bar.set_postfix_str(rate)
        elif time.monotonic() - self.last_log >= self.log_every or self.units == self.total:
            self.last_log = time.monotonic()
            log.info("%s: %d/%d units, %s", self.label, self.units, self.total, rate)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
