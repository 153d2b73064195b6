"""Weighted mixtures of token-shard folders (InternLM2 trains on web, code, books, ... at set
proportions): one deterministic, resumable, elastic stream of windows drawn from several
`TokenDataset`s.

Every window holds `seq_len` tokens, so proportions by tokens are proportions by windows. Window
`i` of the mixture (a global order shared by all ranks) comes from the source that a
low-discrepancy sequence picks, `u_i = frac(phase + i * (sqrt(5) - 1) / 2)` against the
cumulative weights: after any n windows each source's count is within a few windows of
`n * weight`, with no randomness to drift. The phase comes from the seed. The n-th window a
source gives is that source's own window `n` of its global order (epoch `n // windows_per_epoch`,
shuffled per epoch by its seed), read by random access, so nothing is replayed.

Rank `r` of `w` takes mixture windows `start + r`, `start + r + w`, ...; the state is the global
position all ranks reached and each source's count there, so a run resumes exactly, also on
another number of ranks.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from typing import TypedDict, final

import numpy as np
from torch.utils.data import IterableDataset

from refinery.loaders.dataset import Ints, TokenDataset, Window

STATE_VERSION = 1
_STEP = (math.sqrt(5) - 1) / 2
_BLOCK = 4096


@final
class MixtureState(TypedDict):
    """How far all ranks got (`position`) and each source's windows before it, and what must
    match for it to be loaded."""

    version: int
    position: int
    counts: list[int]
    seed: int
    seq_len: int
    weights: list[float]
    manifests: list[str]


class MixtureDataset(IterableDataset[Window]):
    """Windows of several `TokenDataset`s in set proportions; see the module docstring."""

    def __init__(
        self,
        sources: list[tuple[str | os.PathLike[str], float]],
        seq_len: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        document_masking: bool = False,
    ):
        if not sources:
            raise ValueError("a mixture needs at least one source")
        weights = np.array([w for _, w in sources], dtype=np.float64)
        if (weights <= 0).any():
            raise ValueError(f"source weights must be positive, got {weights.tolist()}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world_size {world_size}")
        self.names = [str(p) for p, _ in sources]
        self.weights = weights / weights.sum()
        self.bounds = np.cumsum(self.weights)
        self.bounds[-1] = 1.0
        self.sources = [
            TokenDataset(path, seq_len, seed=seed + i, shuffle=shuffle, document_masking=document_masking)
            for i, (path, _) in enumerate(sources)
        ]
        self.seq_len, self.seed, self.rank, self.world_size = seq_len, seed, rank, world_size
        self.phase = np.random.default_rng(seed).random()
        self.position = 0  # global mixture windows consumed by all ranks
        self.counts = np.zeros(len(sources), dtype=np.int64)  # windows each source gave before `position`
        self.taken = 0  # windows this rank took since `position`

    def source_of(self, start: int, stop: int) -> Ints:
        """The source of each mixture window in [start, stop)."""
        u = np.modf(self.phase + np.arange(start, stop, dtype=np.float64) * _STEP)[0]
        return np.searchsorted(self.bounds, u, side="right").clip(max=len(self.sources) - 1)

    def windows_per_epoch(self) -> int:
        """Windows in one pass of the mixture as sized by its sources (for batch-size checks)."""
        return int(sum(s.windows_per_epoch(0) for s in self.sources))

    def __iter__(self) -> Iterator[Window]:
        state = self.state_dict()  # a new pass goes on from what this rank took
        self.position, self.counts, self.taken = state["position"], np.asarray(state["counts"], np.int64), 0
        counts = self.counts.copy()
        at = self.position
        mine = self.position + self.rank
        while True:
            picked = self.source_of(at, at + _BLOCK)
            for offset in range(0, _BLOCK):
                s = int(picked[offset])
                if at + offset == mine:
                    source = self.sources[s]
                    n, per_epoch = int(counts[s]), source.windows_per_epoch(0)
                    item = source.window(n // per_epoch, n % per_epoch)
                    item["index"], item["source"] = at + offset, s
                    self.taken += 1
                    yield item
                    mine += self.world_size
                counts[s] += 1
            at += _BLOCK

    def state_dict(self) -> MixtureState:
        """Exact between items; the same on every rank that took as many items."""
        position = self.position + self.taken * self.world_size
        counts = self.counts + np.bincount(self.source_of(self.position, position), minlength=len(self.sources))
        return {
            "version": STATE_VERSION,
            "position": int(position),
            "counts": counts.tolist(),
            "seed": self.seed,
            "seq_len": self.seq_len,
            "weights": self.weights.tolist(),
            "manifests": [s.manifest_sha256 for s in self.sources],
        }

    def load_state_dict(self, state: MixtureState) -> None:
        """Continue where `state` stopped; the number of ranks may differ from the saving run."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported mixture state version {state.get('version')!r}")
        saved: Mapping[str, object] = state
        mine = {"seed": self.seed, "seq_len": self.seq_len, "manifests": [s.manifest_sha256 for s in self.sources]}
        for key, value in mine.items():
            if saved[key] != value:
                raise ValueError(f"loader state has {key}={saved[key]!r}, this mixture {value!r}")
        if not np.allclose(state["weights"], self.weights):
            raise ValueError(f"loader state has weights {state['weights']}, this mixture {self.weights.tolist()}")
        self.position, self.counts, self.taken = int(state["position"]), np.asarray(state["counts"], np.int64), 0
