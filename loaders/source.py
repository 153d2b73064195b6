"""Where shards come from: a local folder (memory-mapped) or any `pyarrow.fs` / fsspec URI
(downloaded once into a local cache, then memory-mapped). Each block's digest is checked against
the manifest the first time a process reads it, and a shard's schema and footer when it is
opened, so corrupted bytes are never used.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import xxhash

from refinery.pipeline import storage
from refinery.tokenize.shards import MANIFEST, read_manifest


class ShardCorrupt(ValueError):
    """A shard's bytes do not match its manifest entry."""


class ShardSource:
    """The manifest of a shard folder and verified, memory-mapped readers of its shards."""

    def __init__(
        self,
        path_or_uri: str | os.PathLike[str],
        *,
        filesystem: pafs.FileSystem | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        verify: bool = True,
    ):
        self.uri = str(path_or_uri)
        self.verify = verify
        if filesystem is not None:
            self.fs, self.root = filesystem, self.uri.split("://", 1)[-1]
        elif storage.is_local(self.uri):
            self.fs, self.root = None, self.uri.removeprefix("file://")
        else:
            self.fs, self.root = storage.filesystem(self.uri)
        raw = self._read_small(MANIFEST)
        self.manifest_sha256 = hashlib.sha256(raw).hexdigest()
        self.manifest: dict[str, Any] = read_manifest(raw)  # JSON, checked by read_manifest
        base = Path(cache_dir) if cache_dir else Path(tempfile.gettempdir()) / "refinery-shards"
        self.cache = base / self.manifest_sha256[:16]
        self._readers: dict[int, tuple[pa.ipc.RecordBatchFileReader, memoryview, set[int]]] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_readers"] = {}
        return state

    def _read_small(self, name: str) -> bytes:
        if self.fs is None:
            return (Path(self.root) / name).read_bytes()
        with self.fs.open_input_stream(f"{self.root.rstrip('/')}/{name}") as fh:
            return bytes(fh.read())

    def _local_path(self, index: int) -> Path:
        name: str = self.manifest["shards"][index]["path"]
        if self.fs is None:
            return Path(self.root) / name
        target = self.cache / name
        if not target.exists():
            with storage.replacing(target) as tmp:
                self._download(name, tmp)
        return target

    def _download(self, name: str, dest: Path) -> None:
        with self.fs.open_input_stream(f"{self.root.rstrip('/')}/{name}") as src, open(dest, "wb") as out:
            while chunk := src.read(8 << 20):
                out.write(chunk)

    def reader(self, index: int) -> pa.ipc.RecordBatchFileReader:
        """An open reader of shard `index`; its size and the bytes outside its blocks (schema,
        footer) are checked against the manifest first."""
        opened = self._readers.get(index)
        if opened is None:
            entry = self.manifest["shards"][index]
            path = self._local_path(index)
            mapped = pa.memory_map(str(path))
            whole = memoryview(mapped.read_buffer(mapped.size()))
            mapped.seek(0)
            if self.verify:
                size = len(whole)
                if size != entry["bytes"]:
                    self._reject(entry, path, f"{size} bytes, manifest says {entry['bytes']}")
                blocks = entry["blocks"]
                head, tail = blocks[0][2], blocks[-1][2] + blocks[-1][3]
                digest = xxhash.xxh3_128(whole[:head])
                digest.update(whole[tail:])
                if digest.hexdigest() != entry["meta_xxh3_128"]:
                    self._reject(entry, path, "schema or footer checksum does not match the manifest")
            reader = pa.ipc.open_file(mapped)
            self._check_blocks(entry, path, reader)
            opened = self._readers[index] = (reader, whole, set())
        return opened[0]

    def _check_blocks(self, entry: dict[str, Any], path: Path, reader: pa.ipc.RecordBatchFileReader) -> None:
        """The manifest's block counts against the shard's own metadata (rows, list offsets):
        the loader places every window from those counts, so a wrong one must stop the shard
        before anything is read from it. Cheap (offsets only), so done even without `verify`."""
        blocks = entry["blocks"]
        if reader.num_record_batches != len(blocks):
            self._reject(entry, path, f"{reader.num_record_batches} blocks, manifest says {len(blocks)}")
        for b, (documents, tokens, *_) in enumerate(blocks):
            ids = reader.get_batch(b).column(0)
            offsets = np.frombuffer(ids.buffers()[1], dtype=np.int32)[ids.offset : ids.offset + len(ids) + 1]
            found = int(offsets[-1] - offsets[0]) if len(offsets) else 0
            if len(ids) != documents or found != tokens:
                self._reject(
                    entry,
                    path,
                    f"block {b} holds {len(ids)} documents and {found} tokens, manifest says {documents} and {tokens}",
                )
            if (np.diff(offsets) < 0).any() or (len(offsets) and offsets[-1] > ids.buffers()[3].size // 4):
                self._reject(entry, path, f"block {b} has list offsets outside its values")

    def batch(self, index: int, block: int) -> pa.RecordBatch:
        """Record batch `block` of shard `index`, its bytes verified on first use."""
        reader = self.reader(index)
        _, whole, verified = self._readers[index]
        if self.verify and block not in verified:
            entry = self.manifest["shards"][index]
            _, _, offset, length, expected = entry["blocks"][block]
            if xxhash.xxh3_128_hexdigest(whole[offset : offset + length]) != expected:
                self._reject(entry, self._local_path(index), f"block {block} checksum does not match the manifest")
            verified.add(block)
        return reader.get_batch(block)

    def _reject(self, entry: dict[str, Any], path: Path, why: str) -> NoReturn:
        if self.fs is not None:
            path.unlink(missing_ok=True)
        raise ShardCorrupt(f"shard {entry['path']}: {why}")
