"""Files on any filesystem pyarrow or fsspec reaches: local disks, `s3://`, `gs://`, `hdfs://`, ...

Local paths and `file://` URIs use the local disk; other schemes use pyarrow's own filesystems
(which read the endpoint, region and credentials from the standard AWS or GCS environment and
config files) and then any fsspec protocol. Writes are atomic: on a local disk, a temporary file
fsynced and renamed; on an object store, one PUT of the final object (an object is visible only
once its upload completes).
"""

from __future__ import annotations

import fnmatch
import glob
import os
import posixpath
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, cast

import pyarrow as pa
import pyarrow.fs as pafs


class StorageError(ValueError):
    """A URI that names no reachable filesystem (unknown scheme, bad form)."""


def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem of `uri` and the path inside it (absolute for local paths)."""
    if is_local(uri):
        return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri.removeprefix("file://")))
    try:
        return cast(tuple[pafs.FileSystem, str], pafs.FileSystem.from_uri(uri))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as arrow_err:
        import fsspec

        try:
            fs, path = fsspec.core.url_to_fs(uri)
        except (ValueError, ImportError) as err:
            raise StorageError(f"{uri}: {arrow_err}; fsspec: {err}") from None
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def file_sizes(uris: list[str]) -> dict[str, int]:
    """The size on storage of each file (local paths or URIs), with one listing per folder
    (a few requests on an object store, not one per file); 0 for a file not found."""
    folders: dict[tuple[str, str], tuple[pafs.FileSystem, dict[str, str]]] = {}
    for uri in uris:
        fs, path = filesystem(uri)
        scheme = "" if is_local(uri) else uri.split("://", 1)[0]
        folders.setdefault((scheme, posixpath.dirname(path)), (fs, {}))[1][path] = uri
    sizes = dict.fromkeys(uris, 0)
    for (_, folder), (fs, members) in folders.items():
        for info in fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True)):
            if info.path in members:
                sizes[members[info.path]] = info.size or 0
    return sizes


def temporary_name(name: str) -> str:
    """Where a file (or folder) named `name` is built before it is renamed into place."""
    return f".{name}.{uuid.uuid4().hex}.tmp"


def is_temporary(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


@contextmanager
def replacing(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside the local file `path`, for writers that need a file name (fastText,
    SentencePiece, a download). When the block ends without an error the file is synced and
    renamed into place, so readers see the old file or the whole new one, never half; else it is
    removed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(temporary_name(target.name))
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        fd = os.open(target.parent, os.O_RDONLY)  # the rename itself survives a power loss
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """Write `data` so that readers see either no file or the whole file (object stores publish
    an object only when its upload completes)."""
    if isinstance(fs, pafs.LocalFileSystem):
        with replacing(path) as tmp:
            tmp.write_bytes(data)
        return
    with fs.open_output_stream(path) as out:
        out.write(data)


def list_files(fs: pafs.FileSystem, folder: str) -> list[pafs.FileInfo]:
    """The files directly inside `folder` (none when it does not exist), sorted by name;
    temporary files of unfinished local writes are left out."""
    infos = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
    return sorted(
        (i for i in infos if i.type == pafs.FileType.File and not i.base_name.startswith(".")),
        key=lambda i: i.base_name,
    )


def list_folders(fs: pafs.FileSystem, folder: str) -> list[str]:
    infos = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
    return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)


def expand(pattern: str) -> list[str]:
    """The files a URI names: itself when it is a file, else the files its glob matches
    (`*`, `?`, `[...]` within one path component, `**` across components), as URIs, sorted."""
    fs, path = filesystem(pattern)
    scheme = pattern.split("://", 1)[0]
    if not glob.has_magic(path):
        return [pattern] if fs.get_file_info(path).type == pafs.FileType.File else []
    parts = path.split("/")
    first = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    selector = pafs.FileSelector("/".join(parts[:first]), recursive=True, allow_not_found=True)
    found = []
    for info in fs.get_file_info(selector):
        if info.type != pafs.FileType.File:
            continue
        if "**" in parts:
            matched = fnmatch.fnmatchcase(info.path, path.replace("**/", "*").replace("**", "*"))
        else:
            names = info.path.split("/")
            matched = len(names) == len(parts) and all(fnmatch.fnmatchcase(n, p) for n, p in zip(names, parts))
        if matched:
            found.append(f"{scheme}://{info.path}")
    return sorted(found)
