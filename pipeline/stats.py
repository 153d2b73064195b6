"""Per-stage statistics: counts, bytes, reasons, errors, histograms and dropped examples.

Partials are computed per batch wherever the batch is processed, then merged; every field
merges associatively, so the result does not depend on how work was split. Examples are a
bottom-k sample by hash of the document id, which is uniform, deterministic and mergeable.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, TypedDict, TypeVar, cast

import numpy as np

EXAMPLES_PER_REASON = 5
EXAMPLE_CHARS = 600


class Histogram(TypedDict):
    """A score histogram: `bins + 1` edges and a count per bin."""

    edges: list[float]
    counts: list[int]


class Example(TypedDict):
    """One example document of a drop reason; `key` orders the bottom-k sample."""

    key: str
    id: str
    url: str | None
    text: str


class _StatsFields(TypedDict):
    stage: str
    kind: str
    docs_in: int
    docs_kept: int
    docs_dropped: int
    docs_errored: int
    bytes_in: int
    bytes_kept: int
    dropped_by_reason: dict[str, int]
    failed_by_rule: dict[str, int]
    errors_by_kind: dict[str, int]
    histograms: dict[str, Histogram]
    examples: dict[str, list[Example]]
    extra: dict[str, float]
    seconds: float


class StatsDict(_StatsFields, total=False):
    """A stage's statistics as stored in JSON (`StageStats.to_dict`). Read back from a run,
    `partial` says whether they were merged from the partial files of an unfinished job."""

    partial: bool


class ClusterExample(TypedDict):
    """An example cluster of a global stage: its id, size, kept document and some members."""

    cluster: str
    size: int
    kept: str
    members: list[str]


class StageFigures(TypedDict, total=False):
    """A stage's own figures (from `prepare` or a resolve), merged into its statistics."""

    extra: dict[str, float]
    histograms: dict[str, Histogram]
    examples: list[ClusterExample]


@dataclass(frozen=True)
class HistogramSpec:
    """Fixed bins so that partial histograms add up; values outside are clipped to the ends."""

    lo: float
    hi: float
    bins: int = 20
    log: bool = False

    def edges(self) -> list[float]:
        if self.log:
            return list(np.geomspace(max(self.lo, 1e-9), self.hi, self.bins + 1))
        return list(np.linspace(self.lo, self.hi, self.bins + 1))

    def counts(self, values: np.ndarray) -> list[int]:
        values = np.asarray(values, dtype=np.float64)
        values = values[np.isfinite(values)]
        edges = np.asarray(self.edges())
        clipped = np.clip(values, edges[0], edges[-1])
        counts, _ = np.histogram(clipped, bins=edges)
        return cast(list[int], counts.astype(int).tolist())


def example_key(doc_id: str) -> str:
    return hashlib.blake2b(doc_id.encode(), digest_size=8).hexdigest()


Number = TypeVar("Number", int, float)


def _add_counts(into: dict[str, Number], other: Mapping[str, Number]) -> None:
    for key, value in other.items():
        into[key] = into.get(key, 0) + value


def _merge_examples(into: dict[str, list[Example]], other: Mapping[str, list[Example]]) -> None:
    for reason, rows in other.items():
        merged = {row["key"]: row for row in into.get(reason, []) + rows}
        into[reason] = [merged[k] for k in sorted(merged)][:EXAMPLES_PER_REASON]


@dataclass
class StageStats:
    stage: str
    kind: str
    docs_in: int = 0
    docs_kept: int = 0
    docs_dropped: int = 0
    docs_errored: int = 0
    bytes_in: int = 0
    bytes_kept: int = 0
    dropped_by_reason: dict[str, int] = field(default_factory=dict)
    failed_by_rule: dict[str, int] = field(default_factory=dict)
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    histograms: dict[str, Histogram] = field(default_factory=dict)
    examples: dict[str, list[Example]] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def add_histogram(self, name: str, spec: HistogramSpec, values: np.ndarray) -> None:
        counts = spec.counts(values)
        current = self.histograms.get(name)
        if current is None:
            self.histograms[name] = {"edges": spec.edges(), "counts": counts}
        else:
            current["counts"] = [a + b for a, b in zip(current["counts"], counts)]

    def add_examples(
        self, reason: str, ids: Iterable[str], urls: Iterable[str | None], texts: Iterable[str | None]
    ) -> None:
        rows: list[Example] = [
            {"key": example_key(i), "id": i, "url": u, "text": (t or "")[:EXAMPLE_CHARS]}
            for i, u, t in zip(ids, urls, texts)
        ]
        _merge_examples(self.examples, {reason: rows})

    def merge(self, other: "StageStats") -> "StageStats":
        for name in ("docs_in", "docs_kept", "docs_dropped", "docs_errored", "bytes_in", "bytes_kept", "seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        _add_counts(self.dropped_by_reason, other.dropped_by_reason)
        _add_counts(self.failed_by_rule, other.failed_by_rule)
        _add_counts(self.errors_by_kind, other.errors_by_kind)
        _add_counts(self.extra, other.extra)
        for name, hist in other.histograms.items():
            mine = self.histograms.get(name)
            if mine is None:
                self.histograms[name] = {"edges": list(hist["edges"]), "counts": list(hist["counts"])}
            else:
                mine["counts"] = [a + b for a, b in zip(mine["counts"], hist["counts"])]
        _merge_examples(self.examples, other.examples)
        return self

    def balanced(self) -> bool:
        return self.docs_in == self.docs_kept + self.docs_dropped + self.docs_errored

    def to_dict(self) -> StatsDict:
        return {
            "stage": self.stage,
            "kind": self.kind,
            "docs_in": self.docs_in,
            "docs_kept": self.docs_kept,
            "docs_dropped": self.docs_dropped,
            "docs_errored": self.docs_errored,
            "bytes_in": self.bytes_in,
            "bytes_kept": self.bytes_kept,
            "dropped_by_reason": dict(sorted(self.dropped_by_reason.items())),
            "failed_by_rule": dict(sorted(self.failed_by_rule.items())),
            "errors_by_kind": dict(sorted(self.errors_by_kind.items())),
            "histograms": self.histograms,
            "examples": self.examples,
            "extra": self.extra,
            "seconds": round(self.seconds, 6),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "StageStats":
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def merge_all(parts: Iterable[StageStats], stage: str, kind: str) -> StageStats:
    total = StageStats(stage=stage, kind=kind)
    for part in parts:
        total.merge(part)
    return total
