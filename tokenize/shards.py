"""Token shards: Arrow IPC *files* (random access, memory-mappable) plus `manifest.json`.

Each shard holds `input_ids: list<int32>` and `doc_id: string`, one row per document, cut into
record batches ("blocks") of about `block_tokens` tokens. Blocks are the loader's unit of
shuffling and of random access, so the manifest records every block's documents, tokens, byte
range and XXH3-128 digest (fast enough to check on every first read): a reader can place any
global token position without opening a shard, and verifies each block when it first reads it
(the bytes outside the blocks, i.e. schema and footer, are checked against `meta_xxh3_128` when
the shard is opened), so no corrupted byte is used and the first batch does not wait for a whole
shard to be hashed. `checksum` (sha256) covers the whole file, for tools that copy shards
around. Output is a pure function of the input rows and the sizes: buffers are rebuilt from
zero, nothing is compressed, and no timestamps or host names are written, so identical input
gives byte-identical shards. A pipeline run's shards are written by its workers, one writer per
chunk of documents, and its manifest is merged from the chunks' manifests (`merge_manifests`);
`write_shards` builds a whole local folder at once, which appears atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from refinery.pipeline.storage import temporary_name
from refinery.tokenize.tokenizer import TOKEN_LIST

FORMAT = "refinery-token-shards"
VERSION = 1
MANIFEST = "manifest.json"
# Each shard's `blocks` entry: one list per record batch, in file order.
BLOCK_FIELDS = ("documents", "tokens", "offset", "length", "xxh3_128")
SHARD_SCHEMA = pa.schema(
    [pa.field("input_ids", TOKEN_LIST, nullable=False), pa.field("doc_id", pa.string(), nullable=False)]
)


def shard_name(index: int) -> str:
    return f"shard-{index:06d}.arrow"


class ShardWriter:
    """Streams documents (`input_ids` + `doc_id`) into blocks and shards, each shard handed
    whole to `sink(name, data)` (which writes it atomically wherever the shards live).

    A block closes once it holds `block_tokens` tokens (a longer document is a block alone);
    a shard closes once its blocks reach `shard_bytes`. `close()` returns the manifest of the
    shards written; the caller stores it last, so a folder with a manifest is complete."""

    def __init__(
        self,
        sink: Callable[[str, bytes], None],
        tokenizer: dict,
        *,
        name: Callable[[int], str] = shard_name,
        shard_bytes: int = 64 << 20,
        block_tokens: int = 1 << 18,
    ):
        if shard_bytes <= 0 or block_tokens <= 0:
            raise ValueError("shard_bytes and block_tokens must be positive")
        self.sink, self.name = sink, name
        self.tokenizer = tokenizer
        self.shard_bytes = shard_bytes
        self.block_tokens = block_tokens
        self._pending_ids: list[pa.Array] = []
        self._pending_docs: list[pa.Array] = []
        self._pending_tokens = 0
        self._blocks: list[pa.RecordBatch] = []
        self._block_bytes = 0
        self._shards: list[dict] = []
        self.skipped = 0

    def write(self, input_ids: pa.Array, doc_ids: pa.Array) -> None:
        """Append documents in order; rows whose `input_ids` is null are skipped and counted."""
        if isinstance(input_ids, pa.ChunkedArray):
            input_ids = input_ids.combine_chunks()
        if isinstance(doc_ids, pa.ChunkedArray):
            doc_ids = doc_ids.combine_chunks()
        if input_ids.null_count:
            keep = input_ids.is_valid()
            self.skipped += input_ids.null_count
            input_ids, doc_ids = input_ids.filter(keep), doc_ids.filter(keep)
        lengths = pc.list_value_length(input_ids).to_numpy(zero_copy_only=False).astype(np.int64)
        start = 0
        while start < len(lengths):
            need = self.block_tokens - self._pending_tokens
            cum = np.cumsum(lengths[start:])
            stop = start + int(np.searchsorted(cum, need, side="left")) + 1
            stop = min(stop, len(lengths))
            self._pending_ids.append(input_ids.slice(start, stop - start))
            self._pending_docs.append(doc_ids.slice(start, stop - start))
            self._pending_tokens += int(lengths[start:stop].sum())
            start = stop
            if self._pending_tokens >= self.block_tokens:
                self._close_block()

    def _close_block(self) -> None:
        if not self._pending_ids:
            return
        ids = pa.concat_arrays(self._pending_ids)
        values = pc.list_flatten(ids).to_numpy(zero_copy_only=False).astype(np.int32)
        offsets = np.zeros(len(ids) + 1, dtype=np.int32)
        np.cumsum(pc.list_value_length(ids).to_numpy(zero_copy_only=False), out=offsets[1:])
        docs = pa.array(pa.concat_arrays(self._pending_docs).to_pylist(), type=pa.string())
        block = pa.RecordBatch.from_arrays(
            [pa.ListArray.from_arrays(pa.array(offsets), pa.array(values), type=TOKEN_LIST), docs], schema=SHARD_SCHEMA
        )
        self._blocks.append(block)
        self._block_bytes += block.nbytes
        self._pending_ids, self._pending_docs, self._pending_tokens = [], [], 0
        if self._block_bytes >= self.shard_bytes:
            self._close_shard()

    def _close_shard(self) -> None:
        if not self._blocks:
            return
        sink = pa.BufferOutputStream()
        ranges = []
        with pa.ipc.new_file(sink, SHARD_SCHEMA, options=pa.ipc.IpcWriteOptions(compression=None)) as writer:
            for block in self._blocks:
                start = sink.tell()
                writer.write_batch(block)
                ranges.append((start, sink.tell() - start))
        data = sink.getvalue().to_pybytes()
        name = self.name(len(self._shards))
        self.sink(name, data)
        view = memoryview(data)
        blocks = [
            [
                b.num_rows,
                len(b.column(0).values),
                offset,
                length,
                xxhash.xxh3_128_hexdigest(view[offset : offset + length]),
            ]
            for b, (offset, length) in zip(self._blocks, ranges)
        ]
        meta = xxhash.xxh3_128(view[: ranges[0][0]])
        meta.update(view[ranges[-1][0] + ranges[-1][1] :])
        self._shards.append(
            {
                "path": name,
                "documents": sum(b[0] for b in blocks),
                "tokens": sum(b[1] for b in blocks),
                "bytes": len(data),
                "checksum": "sha256:" + hashlib.sha256(data).hexdigest(),
                "meta_xxh3_128": meta.hexdigest(),
                "blocks": blocks,
            }
        )
        self._blocks, self._block_bytes = [], 0

    def close(self) -> dict:
        self._close_block()
        self._close_shard()
        return manifest(
            self.tokenizer,
            self._shards,
            block_tokens=self.block_tokens,
            shard_bytes=self.shard_bytes,
            skipped=self.skipped,
        )


def manifest(tokenizer: dict, shards: list[dict], *, block_tokens: int, shard_bytes: int, skipped: int = 0) -> dict:
    """The manifest of a shard folder: its shards in the loader's global order, and totals."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "tokenizer": tokenizer,
        "schema": {"input_ids": "list<int32>", "doc_id": "string"},
        "block_tokens": block_tokens,
        "block_fields": list(BLOCK_FIELDS),
        "shard_bytes": shard_bytes,
        "documents": sum(s["documents"] for s in shards),
        "tokens": sum(s["tokens"] for s in shards),
        "skipped_documents": skipped,
        "shards": shards,
    }


def merge_manifests(parts: Iterable[dict], tokenizer: dict, *, block_tokens: int, shard_bytes: int) -> dict:
    """One manifest from the manifests of parts written apart (by workers, per chunk), in order."""
    shards: list[dict] = []
    skipped = 0
    for part in parts:
        shards += part["shards"]
        skipped += part["skipped_documents"]
    return manifest(tokenizer, shards, block_tokens=block_tokens, shard_bytes=shard_bytes, skipped=skipped)


def write_shards(
    batches: Iterable[pa.RecordBatch | pa.Table],
    folder: str | os.PathLike,
    tokenizer: dict,
    *,
    shard_bytes: int = 64 << 20,
    block_tokens: int = 1 << 18,
    ids_column: str = "input_ids",
    doc_id_column: str = "id",
) -> dict:
    """Write a complete local shard folder from batches holding token lists and document ids.

    The folder is built beside `folder` and swapped in at the end, so readers see either the
    previous complete set or the new one; returns the manifest."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    for left in folder.parent.glob(f".{folder.name}.*"):  # what a killed earlier write left
        if left.suffix in (".tmp", ".old"):
            shutil.rmtree(left, ignore_errors=True)
    tmp = folder.with_name(temporary_name(folder.name))
    tmp.mkdir()
    writer = ShardWriter(
        lambda name, data: (tmp / name).write_bytes(data), tokenizer, shard_bytes=shard_bytes, block_tokens=block_tokens
    )
    try:
        for batch in batches:
            writer.write(batch.column(ids_column), batch.column(doc_id_column))
        result = writer.close()
        (tmp / MANIFEST).write_text(manifest_text(result))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = folder.with_name(f".{folder.name}.{uuid.uuid4().hex}.old")
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)
    return result


def manifest_text(manifest: dict) -> str:
    return json.dumps(manifest, indent=1) + "\n"


def read_manifest(text: str | bytes) -> dict:
    """Parse and check a manifest; ValueError names what is wrong."""
    manifest = json.loads(text)
    if manifest.get("format") != FORMAT:
        raise ValueError(f"not a token shard manifest (format {manifest.get('format')!r})")
    if manifest.get("version") != VERSION:
        raise ValueError(f"unsupported token shard version {manifest.get('version')!r} (this reader: {VERSION})")
    return manifest
