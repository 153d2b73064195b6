"""Where shards come from: a local folder (memory-mapped) or any `pyarrow.fs` / fsspec URI
(downloaded once into a local cache, then memory-mapped). Every shard's sha256 is checked
against the manifest when a process first opens it, before any of its tokens are used.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from refinery.tokenize.shards import MANIFEST, read_manifest


class ShardCorrupt(ValueError):
    """A shard's bytes do not match its manifest entry."""


def _is_local(path_or_uri: str) -> bool:
    return "://" not in path_or_uri or path_or_uri.startswith("file://")


def _filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """pyarrow's own filesystems first (s3, gs, hdfs, ...), then any fsspec protocol."""
    try:
        return pafs.FileSystem.from_uri(uri)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        import fsspec

        fs, path = fsspec.core.url_to_fs(uri)
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


class ShardSource:
    """The manifest of a shard folder and verified, memory-mapped readers of its shards."""

    def __init__(self, path_or_uri: str | os.PathLike, *, filesystem: pafs.FileSystem | None = None,
                 cache_dir: str | os.PathLike | None = None, verify: bool = True):
        self.uri = str(path_or_uri)
        self.verify = verify
        if filesystem is not None:
            self.fs, self.root = filesystem, self.uri.split("://", 1)[-1]
        elif _is_local(self.uri):
            self.fs, self.root = None, self.uri.removeprefix("file://")
        else:
            self.fs, self.root = _filesystem(self.uri)
        raw = self._read_small(MANIFEST)
        self.manifest_sha256 = hashlib.sha256(raw).hexdigest()
        self.manifest = read_manifest(raw)
        base = Path(cache_dir) if cache_dir else Path(tempfile.gettempdir()) / "refinery-shards"
        self.cache = base / self.manifest_sha256[:16]
        self._readers: dict[int, pa.ipc.RecordBatchFileReader] = {}

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_readers"] = {}
        return state

    def _read_small(self, name: str) -> bytes:
        if self.fs is None:
            return (Path(self.root) / name).read_bytes()
        with self.fs.open_input_stream(f"{self.root.rstrip('/')}/{name}") as fh:
            return fh.read()

    def _local_path(self, index: int) -> Path:
        entry = self.manifest["shards"][index]
        if self.fs is None:
            return Path(self.root) / entry["path"]
        target = self.cache / entry["path"]
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
            self._download(entry["path"], tmp)
            os.replace(tmp, target)
        return target

    def _download(self, name: str, dest: Path) -> None:
        with self.fs.open_input_stream(f"{self.root.rstrip('/')}/{name}") as src, open(dest, "wb") as out:
            while chunk := src.read(8 << 20):
                out.write(chunk)

    def reader(self, index: int) -> pa.ipc.RecordBatchFileReader:
        """An open reader of shard `index`, verified against the manifest on first use."""
        reader = self._readers.get(index)
        if reader is None:
            entry = self.manifest["shards"][index]
            path = self._local_path(index)
            mapped = pa.memory_map(str(path))
            if self.verify:
                self._check(entry, path, mapped)
            reader = pa.ipc.open_file(mapped)
            self._readers[index] = reader
        return reader

    def _check(self, entry: dict, path: Path, mapped: pa.MemoryMappedFile) -> None:
        size = mapped.size()
        if size != entry["bytes"]:
            raise ShardCorrupt(f"shard {entry['path']}: {size} bytes, manifest says {entry['bytes']}")
        algo, _, expected = entry["checksum"].partition(":")
        digest = hashlib.new(algo, memoryview(mapped.read_buffer(size))).hexdigest()
        mapped.seek(0)
        if digest != expected:
            if self.fs is not None:
                path.unlink(missing_ok=True)
            raise ShardCorrupt(f"shard {entry['path']}: checksum {algo}:{digest} does not match the manifest")
