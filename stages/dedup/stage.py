"""The `dedup` stage: exact-text, URL or MinHash-LSH near-duplicate removal.

InternLM2 deduplicates with MinHash over 5-gram word shingles, 128 permutations and a 0.7
Jaccard threshold; those are the defaults. The map phase (`signatures`) runs per batch on
any worker; one resolve per engine builds the duplicate graph from LSH buckets and finds
its connected components; `verdict` (shared) drops every member but the kept one.
"""

from __future__ import annotations

from functools import cached_property
from typing import Literal

import numpy as np
import pyarrow as pa
from pydantic import Field, model_validator

from refinery.pipeline.stage import GlobalStage, StageParams
from refinery.stages.dedup import minhash, text
from refinery.stages.dedup.graph import distinct_shingles, signature_schema
from refinery.stages.dedup.local import resolve_local

REASONS = {"exact": "exact_duplicate", "url": "duplicate_url", "minhash": "near_duplicate"}


class DedupParams(StageParams):
    method: Literal["exact", "url", "minhash"] = "minhash"
    ngram: int = Field(5, ge=1, description="words per shingle (InternLM2: 5)")
    num_perm: int = Field(128, ge=2, le=1024, description="MinHash permutations (InternLM2: 128)")
    threshold: float = Field(0.7, gt=0.0, le=1.0, description="Jaccard threshold (InternLM2: 0.7)")
    seed: int = Field(1, ge=0, lt=2**32, description="permutation seed (datasketch's default is 1)")
    bands: int | None = Field(None, ge=1, description="LSH bands; default derived from threshold")
    rows: int | None = Field(None, ge=1, description="rows per band; default derived from threshold")
    verify: bool = Field(
        False,
        description="exact Jaccard: candidate pairs before linking them, members against their kept document "
        "(memory: every document's shingle set)",
    )
    max_iterations: int = Field(100, ge=1, description="bound on distributed connected-component rounds")
    partitions: int | None = Field(
        None, ge=1, description="Ray shuffle width; default Ray Data's (Spark: the session's)"
    )

    @model_validator(mode="after")
    def _banding(self):
        if (self.bands is None) != (self.rows is None):
            raise ValueError("set both bands and rows, or neither")
        if self.bands is not None and self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands * rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        return self


class Dedup(GlobalStage):
    """Annotates `<method>_cluster` (the id of the cluster's kept document) on duplicates."""

    kind = "dedup"
    Params = DedupParams

    @property
    def columns(self) -> dict[str, pa.DataType]:
        return {self.cluster_column: pa.string()}

    @property
    def cluster_column(self) -> str:
        return f"{self.params.method}_cluster"

    @property
    def reason(self) -> str:
        return REASONS[self.params.method]

    @cached_property
    def banding(self) -> tuple[int, int]:
        p: DedupParams = self.params
        if p.bands is not None:
            return p.bands, p.rows
        if self.verifying:
            # Verification discards false candidates at the cost of a set intersection, so
            # the banding weighs missed pairs nine times more than false candidates.
            return minhash.lsh_params(p.threshold, p.num_perm, fp_weight=0.1, fn_weight=0.9)
        return minhash.lsh_params(p.threshold, p.num_perm)

    @property
    def verifying(self) -> bool:
        return self.params.verify and self.params.method == "minhash"

    @property
    def signature_schema(self) -> pa.Schema:
        return signature_schema(self.verifying)

    def minhashes(self, batch: pa.RecordBatch | pa.Table) -> tuple[np.ndarray, np.ndarray]:
        """(documents, num_perm) uint32 signatures and whether each document had any shingle."""
        p: DedupParams = self.params
        hashes, offsets = text.shingle_hashes(batch.column("text"), p.ngram)
        return minhash.signatures(hashes, offsets, p.num_perm, p.seed), np.diff(offsets) > 0

    def signatures(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Map phase: one row per document, `keys` = its bucket keys (null: not deduplicated,
        e.g. no words or no URL) and, when verifying, its distinct shingle hashes."""
        p: DedupParams = self.params
        cols = {"id": batch.column("id").cast(pa.string())}
        if p.method == "exact":
            cols["keys"] = pa.array(
                [None if k is None else [k] for k in text.text_keys(batch.column("text"))], pa.list_(pa.int64())
            )
        elif p.method == "url":
            urls = batch.column("url") if "url" in batch.schema.names else pa.nulls(batch.num_rows, pa.string())
            cols["keys"] = pa.array([None if k is None else [k] for k in text.url_keys(urls)], pa.list_(pa.int64()))
        else:
            hashes, spans = text.shingle_hashes(batch.column("text"), p.ngram)
            sigs = minhash.signatures(hashes, spans, p.num_perm, p.seed)
            bands, rows = self.banding
            keys = minhash.band_keys(sigs, bands, rows)
            has = np.diff(spans) > 0
            offsets = np.zeros(len(sigs) + 1, dtype=np.int32)
            np.cumsum(has * bands, out=offsets[1:])
            cols["keys"] = pa.ListArray.from_arrays(pa.array(offsets), pa.array(keys[has].ravel()), mask=pa.array(~has))
            if self.verifying:
                cols["shingles"] = distinct_shingles(hashes, spans)
        return pa.RecordBatch.from_pydict(cols, schema=self.signature_schema)

    def resolve_local(self, signatures: pa.Table) -> pa.Table:
        return resolve_local(
            signatures, reason=self.reason, cluster_column=self.cluster_column, threshold=self.params.threshold
        )

    def resolve_ray(self, signatures):
        from refinery.stages.dedup.ray_engine import resolve_ray

        return resolve_ray(
            signatures,
            reason=self.reason,
            cluster_column=self.cluster_column,
            threshold=self.params.threshold,
            max_iterations=self.params.max_iterations,
            partitions=self.params.partitions,
        )

    def resolve_spark(self, signatures):
        from refinery.stages.dedup.spark_engine import resolve_spark

        return resolve_spark(
            signatures,
            reason=self.reason,
            cluster_column=self.cluster_column,
            threshold=self.params.threshold,
            max_iterations=self.params.max_iterations,
        )

    def resolution_stats(self, resolution) -> dict:
        from refinery.stages.dedup.report import resolution_stats

        return resolution_stats(resolution, self.cluster_column)
