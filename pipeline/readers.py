"""Streaming readers: one input file in, Arrow batches of the core schema out.

Each reader yields `(batch, stats)` pairs, `stats` being the "read" statistics of the records
consumed for that batch: every record is counted, and a bad one (malformed JSON, invalid
UTF-8, a truncated stream, a broken WARC record, an empty file, a wrong schema) is counted
under a named error kind while reading goes on with the rest.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import zlib
from contextlib import contextmanager
from typing import IO, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
import pyarrow.parquet as pq

from refinery.pipeline.config import InputConfig
from refinery.pipeline.schema import CORE_SCHEMA, RAW_SCHEMA
from refinery.pipeline.stats import StageStats
from refinery.pipeline.storage import filesystem, is_local

READ = "read"
# Errors that mean "the compressed stream ends or is damaged here".
STREAM_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error, OSError)


def _new_stats() -> StageStats:
    return StageStats(stage=READ, kind=READ)


def _error(stats: StageStats, kind: str) -> None:
    stats.docs_in += 1
    stats.docs_errored += 1
    stats.errors_by_kind[kind] = stats.errors_by_kind.get(kind, 0) + 1


def _file_key(path: str) -> str:
    return hashlib.blake2b(path.encode(), digest_size=8).hexdigest()


def open_raw(path: str) -> IO[bytes]:
    """A binary stream of the file as stored: a local path or any URI `storage` reaches."""
    if is_local(path):
        return open(path.removeprefix("file://"), "rb")
    fs, inner = filesystem(path)
    return fs.open_input_file(inner)


@contextmanager
def open_input(path: str) -> Iterator[IO[bytes]]:
    """A binary stream of the file's decompressed bytes (.gz and .zst by name)."""
    raw = open_raw(path)
    try:
        if path.endswith(".gz"):
            yield gzip.GzipFile(fileobj=raw)
        elif path.endswith(".zst"):
            import zstandard

            yield zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        else:
            yield raw
    finally:
        raw.close()


def _finish(batch_rows: dict[str, list], schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(batch_rows, schema=schema)


def _core_row(rows: dict[str, list], doc_id, text, url, source) -> None:
    rows["id"].append(doc_id)
    rows["text"].append(text)
    rows["url"].append(url)
    rows["source"].append(source)


# ---------------------------------------------------------------- JSONL


def _jsonl_blocks(stream: IO[bytes], block_bytes: int, stats: StageStats) -> Iterator[bytes]:
    """Complete-line blocks of about `block_bytes`; a damaged stream ends with an error count.

    Reads in small pieces so that a stream damaged near its end still yields what preceded it."""
    read = getattr(stream, "read1", stream.read)
    pieces: list[bytes] = []
    size = 0
    while True:
        try:
            piece = read(1 << 16)
        except STREAM_ERRORS as err:
            _error(stats, "truncated_stream" if isinstance(err, EOFError) else "corrupt_stream")
            piece = b""
        if piece:
            pieces.append(piece)
            size += len(piece)
            if size < block_bytes:
                continue
        data = b"".join(pieces)
        if not piece:
            if data:
                yield data if data.endswith(b"\n") else data + b"\n"
            return
        cut = data.rfind(b"\n")
        if cut < 0:
            pieces, size = [data], len(data)
            continue
        yield data[: cut + 1]
        pieces = [data[cut + 1 :]]
        size = len(pieces[0])


def _jsonl_fast(block: bytes, cfg: InputConfig) -> pa.Table | None:
    """Parse a whole block with Arrow's JSON reader; None when the block needs the careful path
    (a malformed line, invalid UTF-8, a missing text or an id/url that is not a string)."""
    schema = pa.schema([(cfg.text_key, pa.large_string()), (cfg.id_key, pa.string()), (cfg.url_key, pa.string())])
    try:
        table = pajson.read_json(
            io.BytesIO(block),
            read_options=pajson.ReadOptions(block_size=max(len(block), 1 << 20), use_threads=False),
            parse_options=pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    if table.num_rows != block.count(b"\n") or table.column(cfg.text_key).null_count:
        return None
    return table


def read_jsonl(path: str, cfg: InputConfig) -> Iterator[tuple[pa.RecordBatch, StageStats]]:
    key = _file_key(path)
    line_no = 0
    stats = _new_stats()
    saw_bytes = False
    with open_input(path) as stream:
        for block in _jsonl_blocks(stream, cfg.batch_bytes, stats):
            if not saw_bytes:
                saw_bytes = bool(block.strip())
            table = _jsonl_fast(block, cfg)
            if table is not None:
                n = table.num_rows
                ids = table.column(cfg.id_key).combine_chunks()
                if ids.null_count:
                    made = pa.array([f"{key}:{i}" for i in range(line_no, line_no + n)], pa.string())
                    ids = pc.if_else(ids.is_valid(), ids, made)
                batch = pa.RecordBatch.from_arrays(
                    [ids, table.column(cfg.text_key).combine_chunks(), table.column(cfg.url_key).combine_chunks(),
                     pa.repeat(pa.scalar(path, pa.string()), n)],
                    schema=CORE_SCHEMA,
                )
                line_no += n
                stats.docs_in += n
                stats.docs_kept += n
            else:
                rows = {name: [] for name in CORE_SCHEMA.names}
                for raw in block.split(b"\n")[:-1]:
                    line_no += 1
                    if not raw.strip():
                        continue
                    doc = _parse_line(raw, cfg, stats)
                    if doc is not None:
                        doc_id = doc.get(cfg.id_key)
                        url = doc.get(cfg.url_key)
                        _core_row(rows, str(doc_id) if doc_id is not None else f"{key}:{line_no - 1}", doc[cfg.text_key],
                                  str(url) if url is not None else None, path)
                        stats.docs_in += 1
                        stats.docs_kept += 1
                batch = _finish(rows, CORE_SCHEMA)
            stats.bytes_in += len(block)
            stats.bytes_kept += len(block)
            yield batch, stats
            stats = _new_stats()
    if not saw_bytes:
        _error(stats, "empty_file")
    if stats.docs_in:
        yield _finish({n: [] for n in CORE_SCHEMA.names}, CORE_SCHEMA), stats


def _parse_line(raw: bytes, cfg: InputConfig, stats: StageStats) -> dict | None:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        _error(stats, "invalid_utf8")
        return None
    try:
        doc = json.loads(line)
    except json.JSONDecodeError:
        _error(stats, "malformed_json")
        return None
    if not isinstance(doc, dict):
        _error(stats, "not_an_object")
        return None
    if not isinstance(doc.get(cfg.text_key), str):
        _error(stats, "missing_text")
        return None
    return doc


# ---------------------------------------------------------------- Parquet


def read_parquet(path: str, cfg: InputConfig) -> Iterator[tuple[pa.RecordBatch, StageStats]]:
    stats = _new_stats()
    try:
        with open_input(path) as stream:
            pf = pq.ParquetFile(stream)
            names = pf.schema_arrow.names
            if cfg.text_key not in names:
                _error(stats, "wrong_schema")
                yield _finish({n: [] for n in CORE_SCHEMA.names}, CORE_SCHEMA), stats
                return
            columns = [c for c in (cfg.text_key, cfg.id_key, cfg.url_key) if c in names]
            rows_per_batch = max(1, int(cfg.batch_bytes / _avg_row_bytes(pf)))
            start = 0
            key = _file_key(path)
            for batch in pf.iter_batches(batch_size=rows_per_batch, columns=columns):
                n = batch.num_rows
                text = batch.column(cfg.text_key).cast(pa.large_string())
                valid = text.is_valid()
                ids = (batch.column(cfg.id_key).cast(pa.string()) if cfg.id_key in columns
                       else pa.array([f"{key}:{i}" for i in range(start, start + n)], pa.string()))
                urls = batch.column(cfg.url_key).cast(pa.string()) if cfg.url_key in columns else pa.nulls(n, pa.string())
                out = pa.RecordBatch.from_arrays([ids, text, urls, pa.array([path] * n, pa.string())], schema=pa.schema(
                    [f.with_nullable(True) for f in CORE_SCHEMA]))
                good = out.filter(valid)
                missing = n - good.num_rows
                stats.docs_in += good.num_rows
                stats.docs_kept += good.num_rows
                for _ in range(missing):
                    _error(stats, "missing_text")
                nbytes = int(pc.sum(pc.binary_length(good.column("text"))).as_py() or 0)
                stats.bytes_in += nbytes
                stats.bytes_kept += nbytes
                start += n
                yield good.cast(CORE_SCHEMA), stats
                stats = _new_stats()
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OSError):
        _error(stats, "corrupt_parquet")
    if stats.docs_in:
        yield _finish({n: [] for n in CORE_SCHEMA.names}, CORE_SCHEMA), stats


def _avg_row_bytes(pf: pq.ParquetFile) -> float:
    meta = pf.metadata
    total = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    return max(1.0, total / max(1, meta.num_rows))


# ---------------------------------------------------------------- WARC


def read_warc(path: str, cfg: InputConfig) -> Iterator[tuple[pa.RecordBatch, StageStats]]:
    """HTTP response records of a WARC (plain or gzip); other record types are dropped by name."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    stats = _new_stats()
    rows = _raw_rows()
    size = records = 0
    try:
        with open_raw(path) as stream:  # FastWARC detects and decompresses gzip members itself
            for record in ArchiveIterator(stream, parse_http=True):
                records += 1
                if record.record_type != WarcRecordType.response:
                    kind = "warc_" + str(record.record_type).rsplit(".", 1)[-1]
                    stats.docs_in += 1
                    stats.docs_dropped += 1
                    stats.dropped_by_reason[kind] = stats.dropped_by_reason.get(kind, 0) + 1
                    continue
                body = record.reader.read()
                if len(body) < record.content_length:
                    _error(stats, "warc_truncated_record")
                    continue
                headers = record.http_headers
                content_type = headers.get("Content-Type") if headers is not None else None
                try:
                    if headers is not None and "chunked" in (headers.get("Transfer-Encoding") or "").lower():
                        body = _dechunk(body)
                    body = _decode_content(body, headers.get("Content-Encoding") if headers is not None else None)
                except (OSError, EOFError, zlib.error, ValueError) as err:
                    _error(stats, "http_decode_error" if not isinstance(err, ValueError) else str(err))
                    continue
                _raw_row(rows, record.record_id or f"{_file_key(path)}:{record.stream_pos}",
                         record.headers.get("WARC-Target-URI"), path, body, content_type)
                stats.docs_in += 1
                stats.docs_kept += 1
                stats.bytes_in += len(body)
                stats.bytes_kept += len(body)
                size += len(body)
                if size >= cfg.batch_bytes:
                    yield _finish(rows, RAW_SCHEMA), stats
                    rows, stats, size = _raw_rows(), _new_stats(), 0
    except STREAM_ERRORS:
        _error(stats, "warc_broken_record")
    if records == 0 and not stats.docs_in:
        _error(stats, "empty_file")
    if stats.docs_in:
        yield _finish(rows, RAW_SCHEMA), stats


def _dechunk(body: bytes) -> bytes:
    """Undo HTTP chunked transfer encoding; bodies stored already de-chunked pass through."""
    out, pos = [], 0
    while pos < len(body):
        end = body.find(b"\r\n", pos)
        if end < 0:
            return body if not out else b"".join(out)
        try:
            size = int(body[pos:end].split(b";")[0].strip() or b"x", 16)
        except ValueError:
            return body if not out else b"".join(out)
        if size == 0:
            break
        out.append(body[end + 2 : end + 2 + size])
        pos = end + 2 + size + 2
    return b"".join(out)


def _decode_content(body: bytes, encoding: str | None) -> bytes:
    """Undo HTTP Content-Encoding (gzip, deflate) of a stored response body."""
    encoding = (encoding or "identity").strip().lower()
    if encoding in ("identity", "none", ""):
        return body
    if encoding in ("gzip", "x-gzip"):
        return gzip.decompress(body)
    if encoding == "deflate":
        try:
            return zlib.decompress(body)
        except zlib.error:
            return zlib.decompress(body, -zlib.MAX_WBITS)
    raise ValueError("unsupported_content_encoding")


def _raw_rows() -> dict[str, list]:
    return {name: [] for name in RAW_SCHEMA.names}


def _raw_row(rows, doc_id, url, source, body, content_type) -> None:
    _core_row(rows, doc_id, "", url, source)
    rows["html"].append(body)
    rows["content_type"].append(content_type)


# ---------------------------------------------------------------- HTML


def read_html(path: str, cfg: InputConfig) -> Iterator[tuple[pa.RecordBatch, StageStats]]:
    """One HTML file (optionally .gz) is one document."""
    stats = _new_stats()
    rows = _raw_rows()
    try:
        with open_input(path) as stream:
            body = stream.read()
    except STREAM_ERRORS:
        _error(stats, "corrupt_stream")
    else:
        if not body.strip():
            _error(stats, "empty_file")
        else:
            _raw_row(rows, _file_key(path), None, path, body, "text/html")
            stats.docs_in = stats.docs_kept = 1
            stats.bytes_in = stats.bytes_kept = len(body)
    yield _finish(rows, RAW_SCHEMA), stats


READERS = {"jsonl": read_jsonl, "parquet": read_parquet, "warc": read_warc, "html": read_html}


def read_file(path: str, cfg: InputConfig) -> Iterator[tuple[pa.RecordBatch, StageStats]]:
    """Batches and read statistics of one input file in the configured format."""
    yield from READERS[cfg.format](path, cfg)
