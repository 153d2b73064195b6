"""Exact, URL and MinHash near-duplicate removal with one answer on every engine."""

from refinery.stages.dedup.api import deduplicate
from refinery.stages.dedup.report import resolution_stats
from refinery.stages.dedup.stage import REASONS, Dedup, DedupParams

__all__ = ["Dedup", "DedupParams", "REASONS", "deduplicate", "resolution_stats"]
