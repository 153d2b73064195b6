"""The `tokenize` stage: SentencePiece ids for every document, then token shards for the run.

`process` adds `input_ids` (list<int32>, with BOS/EOS as configured) and `n_tokens`, encoding
the whole batch in SentencePiece's thread pool. `write_part` runs on the worker that holds a
chunk's finally kept documents and writes that chunk's shards into `RUN/shards/` (names from
the unit and chunk, so every runner yields the same bytes) with a small manifest of its own;
`finalize` merges those manifests, in name order, into `RUN/shards/manifest.json`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from refinery.pipeline.resources import resolve_path
from refinery.pipeline.stage import MapStage, StageParams, Verdict, set_column
from refinery.pipeline.stats import HistogramSpec
from refinery.tokenize.shards import MANIFEST, ShardWriter, manifest_text, merge_manifests
from refinery.tokenize.tokenizer import TOKEN_LIST, Tokenizer, load_tokenizer


class TokenizeParams(StageParams):
    # A SentencePiece .model: the shipped demo one, or e.g. an official InternLM2 tokenizer.model.
    tokenizer: str
    add_bos: bool = True
    add_eos: bool = True
    # Documents with fewer tokens than this (BOS/EOS not counted) are dropped as `too_few_tokens`.
    min_tokens: int = Field(default=1, ge=0)
    # Encoding threads per worker; 0 = every CPU the worker may use.
    threads: int = Field(default=0, ge=0)
    # Shard size target in bytes, and tokens per block (the loader's unit of shuffling).
    shard_bytes: int = Field(default=64 << 20, gt=0)
    block_tokens: int = Field(default=1 << 18, gt=0)


class Tokenize(MapStage):
    kind = "tokenize"
    Params = TokenizeParams
    columns = {"input_ids": TOKEN_LIST, "n_tokens": pa.int32()}
    histograms = {"n_tokens": HistogramSpec(1, 1e7, 28, log=True)}
    uses_model = True

    @classmethod
    def check_params(cls, params: TokenizeParams, base) -> TokenizeParams:
        """Fail at config time when the model is missing or is not a SentencePiece model; store
        its resolved path, so the resolved job (and every worker) uses the same file whatever
        its working directory."""
        path = resolve_path(params.tokenizer, Path(base))
        if not path.is_file():
            raise ValueError(f"tokenizer: no model file at {params.tokenizer!r}")
        load_tokenizer(path)
        return params.model_copy(update={"tokenizer": str(path.resolve())})

    def setup(self) -> None:
        p: TokenizeParams = self.params
        self.tokenizer = Tokenizer(p.tokenizer, threads=p.threads)

    def _loaded(self) -> Tokenizer:
        if getattr(self, "tokenizer", None) is None:
            self.setup()
        return self.tokenizer

    def process(self, batch: pa.RecordBatch) -> Verdict:
        p: TokenizeParams = self.params
        tok = self._loaded()
        text = batch.column("text")
        ids = tok.encode_arrow(text, add_bos=p.add_bos, add_eos=p.add_eos)
        n_tokens = pc.list_value_length(ids).cast(pa.int32())
        batch = set_column(set_column(batch, "input_ids", ids), "n_tokens", n_tokens)
        errors = {}
        if text.null_count:
            errors["null_text"] = ~text.is_valid().to_numpy(zero_copy_only=False)
        content = n_tokens.to_numpy(zero_copy_only=False) - int(p.add_bos) - int(p.add_eos)
        failed = {"too_few_tokens": content < p.min_tokens} if p.min_tokens else {}
        return Verdict(batch, failed, errors)

    def write_part(self, run, unit: int, chunk: int, batch: pa.RecordBatch) -> None:
        if "input_ids" not in batch.schema.names:
            return
        p: TokenizeParams = self.params
        writer = ShardWriter(
            lambda name, data: run.write_bytes(f"{run.shards}/{name}", data),
            self._info(),
            name=lambda index: run.shard_name(unit, chunk, index),
            shard_bytes=p.shard_bytes,
            block_tokens=p.block_tokens,
        )
        writer.write(batch.column("input_ids"), batch.column("id"))
        run.write_text(run.shard_manifest_part(unit, chunk), json.dumps(writer.close()))

    def finalize(self, run) -> None:
        p: TokenizeParams = self.params
        parts = (json.loads(run.read_text(name)) for name in run.names(run.shard_manifests))
        merged = merge_manifests(parts, self._info(), block_tokens=p.block_tokens, shard_bytes=p.shard_bytes)
        run.write_text(f"{run.shards}/{MANIFEST}", manifest_text(merged))

    def _info(self) -> dict:
        p: TokenizeParams = self.params
        return self._loaded().info(add_bos=p.add_bos, add_eos=p.add_eos)
