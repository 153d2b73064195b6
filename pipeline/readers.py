"""Streaming readers: one input file in, Arrow batches of the core schema out.

Each reader yields `(batch, stats)` pairs, `stats` being the "read" statistics of the records
consumed for that batch: every record is counted, and a bad one (malformed JSON, invalid
UTF-8, a truncated stream, a broken WARC record, an empty file, a wrong schema) is counted
under a named error kind, once, while reading goes on with the rest. Bad rows are counted row
by row, so the good rows beside them are kept. Documents over `max_doc_bytes` are dropped as
`too_large` (or truncated, counted in `extra`) here, before any stage holds them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import zlib
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any, Callable, Iterator, Protocol, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
import pyarrow.parquet as pq

from refinery.pipeline.config import InputConfig
from refinery.pipeline.schema import CORE_SCHEMA, RAW_SCHEMA, doc_bytes, replace_rows
from refinery.pipeline.stats import StageStats
from refinery.pipeline.storage import filesystem, is_local

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

READ = "read"
# Errors that mean "the compressed stream ends or is damaged here".
STREAM_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error, OSError)
# The columns of a batch being built, by name: ids, texts, URLs, sources, pages, content types.
Rows = dict[str, list[Any]]


class ByteStream(Protocol):
    """What `DamageStop` reads from: a binary stream (a file, a decompressor)."""

    def read(self, size: int = -1, /) -> bytes: ...


class DamageStop(io.RawIOBase):
    """A stream that ends where the stream it wraps is damaged, remembering the error kind
    (`truncated_stream` or `corrupt_stream`): what came before is still read, and the damage
    is counted once by the reader."""

    def __init__(self, inner: ByteStream, errors: tuple[type[BaseException], ...] = STREAM_ERRORS):
        self.errors = errors
        # One decompression step per call: a read that fills a whole buffer would lose the bytes
        # decompressed before the damage along with the call.
        self.read_some: Callable[[int], bytes] = getattr(inner, "read1", inner.read)
        self.damage: str | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        if self.damage is not None:
            return 0
        with memoryview(buffer) as view:
            try:
                data = self.read_some(len(view))
            except self.errors as err:
                self.damage = "truncated_stream" if isinstance(err, EOFError) else "corrupt_stream"
                return 0
            view[: len(data)] = data
        return len(data)


def _new_stats() -> StageStats:
    return StageStats(stage=READ, kind=READ)


def _error(stats: StageStats, kind: str, count: int = 1) -> None:
    if count:
        stats.docs_in += count
        stats.docs_errored += count
        stats.errors_by_kind[kind] = stats.errors_by_kind.get(kind, 0) + count


def _file_key(path: str) -> str:
    return hashlib.blake2b(path.encode(), digest_size=8).hexdigest()


def open_raw(path: str) -> IO[bytes]:
    """A binary stream of the file as stored: a local path or any URI `storage` reaches."""
    if is_local(path):
        return open(path.removeprefix("file://"), "rb")
    fs, inner = filesystem(path)
    return cast(IO[bytes], fs.open_input_file(inner))


@contextmanager
def open_input(path: str) -> Iterator[DamageStop]:
    """A binary stream of the file's decompressed bytes (.gz and .zst by name) that stops
    where the file is damaged (see `DamageStop.damage`)."""
    raw = open_raw(path)
    try:
        if path.endswith(".gz"):
            yield DamageStop(gzip.GzipFile(fileobj=raw))
        elif path.endswith(".zst"):
            import zstandard

            yield DamageStop(
                zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True),
                STREAM_ERRORS + (zstandard.ZstdError,),
            )
        else:
            yield DamageStop(raw)
    finally:
        raw.close()


def _finish(batch_rows: Rows, schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(batch_rows, schema=schema)


def _core_row(rows: Rows, doc_id: str, text: str, url: str | None, source: str) -> None:
    rows["id"].append(doc_id)
    rows["text"].append(text)
    rows["url"].append(url)
    rows["source"].append(source)


# ---------------------------------------------------------------- JSONL


def _jsonl_blocks(stream: DamageStop, block_bytes: int) -> Iterator[bytes]:
    """Complete-line blocks of about `block_bytes`, up to where the stream ends or is damaged
    (a last line without its newline is complete only where the stream ended cleanly).

    Reads in small pieces so that a stream damaged near its end still yields what preceded it."""
    pieces: list[bytes] = []
    size = 0
    while True:
        piece = stream.read(1 << 16)
        if piece:
            pieces.append(piece)
            size += len(piece)
            if size < block_bytes:
                continue
        data = b"".join(pieces)
        if not piece:
            if stream.damage is not None:  # a line cut by the damage is the record it counts
                data = data[: data.rfind(b"\n") + 1]
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
        for block in _jsonl_blocks(stream, cfg.batch_bytes):
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
                    [
                        ids,
                        table.column(cfg.text_key).combine_chunks(),
                        table.column(cfg.url_key).combine_chunks(),
                        pa.repeat(pa.scalar(path, pa.string()), n),
                    ],
                    schema=CORE_SCHEMA,
                )
                line_no += n
                stats.docs_in += n
                stats.docs_kept += n
            else:
                rows: Rows = {name: [] for name in CORE_SCHEMA.names}
                for raw in block.split(b"\n")[:-1]:
                    line_no += 1
                    if not raw.strip():
                        continue
                    doc = _parse_line(raw, cfg, stats)
                    if doc is not None:
                        doc_id = doc.get(cfg.id_key)
                        url = doc.get(cfg.url_key)
                        _core_row(
                            rows,
                            str(doc_id) if doc_id is not None else f"{key}:{line_no - 1}",
                            doc[cfg.text_key],
                            str(url) if url is not None else None,
                            path,
                        )
                        stats.docs_in += 1
                        stats.docs_kept += 1
                batch = _finish(rows, CORE_SCHEMA)
            stats.bytes_in += len(block)
            stats.bytes_kept += len(block)
            yield batch, stats
            stats = _new_stats()
        if stream.damage is not None:
            _error(stats, stream.damage)
        elif not saw_bytes:
            _error(stats, "empty_file")
    if stats.docs_in:
        yield _finish({n: [] for n in CORE_SCHEMA.names}, CORE_SCHEMA), stats


def _parse_line(raw: bytes, cfg: InputConfig, stats: StageStats) -> dict[str, Any] | None:
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
    text = doc.get(cfg.text_key)
    if not isinstance(text, str):
        _error(stats, "missing_text" if text is None else "wrong_schema")
        return None
    return doc


# ---------------------------------------------------------------- Parquet


def _text_type(dtype: pa.DataType) -> bool:
    return cast(
        bool,
        pa.types.is_string(dtype)
        or pa.types.is_large_string(dtype)
        or pa.types.is_binary(dtype)
        or pa.types.is_large_binary(dtype),
    )


def _as_utf8(column: pa.Array, dtype: pa.DataType) -> tuple[pa.Array, np.ndarray | None]:
    """A string or binary column as `dtype`, and which rows are not valid UTF-8 (None: all are;
    those rows become null)."""
    try:
        return column.cast(dtype), None
    except pa.ArrowInvalid:
        if not (pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type)):
            raise
    # Per-row Python, only for a batch that holds invalid UTF-8: Arrow's cast rejects the whole
    # array without naming the rows.
    bad = np.array([v is not None and not _is_utf8(v) for v in column.to_pylist()], dtype=bool)
    cleaned = pc.if_else(pa.array(bad), pa.nulls(len(column), column.type), column)
    return cleaned.cast(dtype), bad


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@contextmanager
def _parquet_source(path: str) -> Iterator[IO[bytes]]:
    """Parquet needs random access: a plain file is read in place, a compressed one in memory."""
    if path.endswith((".gz", ".zst")):
        with open_input(path) as stream:
            data = stream.read()
            if stream.damage is not None:
                raise OSError(stream.damage)
        yield pa.BufferReader(data)
        return
    with open_raw(path) as raw:
        yield raw


def read_parquet(path: str, cfg: InputConfig) -> Iterator[tuple[pa.RecordBatch, StageStats]]:
    """Rows of a Parquet file. A text column that is not a string (or binary) column makes every
    row `wrong_schema`; a null text is `missing_text` and invalid UTF-8 `invalid_utf8`, row by
    row; a file damaged part way counts its unread rows as `corrupt_parquet`."""
    stats = _new_stats()
    total = seen = 0
    try:
        with _parquet_source(path) as source:
            pf = pq.ParquetFile(source)
            total = pf.metadata.num_rows
            schema = pf.schema_arrow
            names = schema.names
            id_type = schema.field(cfg.id_key).type if cfg.id_key in names else pa.string()
            wrong = (
                cfg.text_key not in names
                or not _text_type(schema.field(cfg.text_key).type)
                or not (_text_type(id_type) or pa.types.is_integer(id_type))
                or (cfg.url_key in names and not _text_type(schema.field(cfg.url_key).type))
            )
            if wrong:
                _error(stats, "wrong_schema", max(1, total))
                seen = total
            else:
                columns = [c for c in (cfg.text_key, cfg.id_key, cfg.url_key) if c in names]
                rows_per_batch = max(1, int(cfg.batch_bytes / _avg_row_bytes(pf)))
                key = _file_key(path)
                for batch in pf.iter_batches(batch_size=rows_per_batch, columns=columns):
                    yield _parquet_batch(batch, cfg, path, key, seen, stats), stats
                    seen += batch.num_rows
                    stats = _new_stats()
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OSError):
        _error(stats, "corrupt_parquet", max(1, total - seen))
    if stats.docs_in:
        yield _finish({n: [] for n in CORE_SCHEMA.names}, CORE_SCHEMA), stats


def _parquet_batch(
    batch: pa.RecordBatch, cfg: InputConfig, path: str, key: str, start: int, stats: StageStats
) -> pa.RecordBatch:
    """One batch of Parquet rows in the core schema, its bad rows counted in `stats` and left out."""
    n = batch.num_rows
    invalid = np.zeros(n, dtype=bool)
    columns = {}
    for name, column, dtype in (
        ("text", cfg.text_key, pa.large_string()),
        ("id", cfg.id_key, pa.string()),
        ("url", cfg.url_key, pa.string()),
    ):
        if column in batch.schema.names:
            columns[name], bad = _as_utf8(batch.column(column), dtype)
            if bad is not None:
                invalid |= bad
    missing = ~invalid & np.asarray(columns["text"].is_null(), dtype=bool)
    ids = columns.get("id")
    made = pa.array([f"{key}:{i}" for i in range(start, start + n)], pa.string())
    ids = made if ids is None else pc.if_else(ids.is_valid(), ids, made)
    urls = columns.get("url", pa.nulls(n, pa.string()))
    out = pa.RecordBatch.from_arrays(
        [ids, columns["text"], urls, pa.array([path] * n, pa.string())],
        schema=pa.schema([f.with_nullable(True) for f in CORE_SCHEMA]),
    )
    good = out.filter(pa.array(~(invalid | missing)))
    _error(stats, "invalid_utf8", int(invalid.sum()))
    _error(stats, "missing_text", int(missing.sum()))
    nbytes = int(pc.sum(pc.binary_length(good.column("text"))).as_py() or 0)
    stats.docs_in += good.num_rows
    stats.docs_kept += good.num_rows
    stats.bytes_in += nbytes
    stats.bytes_kept += nbytes
    return good.cast(CORE_SCHEMA)


def _avg_row_bytes(pf: pq.ParquetFile) -> float:
    meta = pf.metadata
    total = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    return cast(float, max(1.0, total / max(1, meta.num_rows)))


# ---------------------------------------------------------------- WARC


def _gzip_damage(raw: IO[bytes], offset: int) -> str | None:
    """How the gzip members from `offset` to the end of the file are damaged
    (`truncated_stream`, `corrupt_stream`), or None when they all end whole. FastWARC stops
    quietly at a member cut short, so a reader checks the tail after its last record."""
    raw.seek(offset)
    members = zlib.decompressobj(31)
    while True:
        if members.eof:
            data = members.unused_data or raw.read(1 << 20)
            if not data:
                return None
            members = zlib.decompressobj(31)
        else:
            data = raw.read(1 << 20)
            if not data:
                return "truncated_stream"
        try:
            members.decompress(data)  # the output is not needed, only whether it decodes
        except zlib.error:
            return "corrupt_stream"


def read_warc(path: str, cfg: InputConfig) -> Iterator[tuple[pa.RecordBatch, StageStats]]:
    """HTTP response records of a WARC (plain or gzip); other record types are dropped by name.

    A record cut short (headers without their mandatory WARC-Type and Content-Length, or a body
    shorter than its Content-Length) is `warc_truncated_record`; a file that ends or is damaged
    after its last whole record counts one error for what follows; a response whose HTTP status
    line does not parse is `http_decode_error`."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    stats = _new_stats()
    rows = _raw_rows()
    size = records = last_start = 0
    last_whole = True  # whether the last record read was complete
    try:
        with open_raw(path) as raw:
            gzipped = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            for record in ArchiveIterator(raw, parse_http=True):  # it decompresses gzip members itself
                records += 1
                last_start = record.stream_pos
                complete = "WARC-Type" in record.headers and (record.headers.get("Content-Length") or "").isdigit()
                body = record.reader.read() if complete else b""
                # (after parse_http, a response's content_length is its HTTP body's length)
                last_whole = complete and len(body) >= record.content_length
                if not last_whole:
                    _error(stats, "warc_truncated_record")
                    continue
                if record.record_type != WarcRecordType.response:
                    kind = "warc_" + str(record.record_type).rsplit(".", 1)[-1]
                    stats.docs_in += 1
                    stats.docs_dropped += 1
                    stats.dropped_by_reason[kind] = stats.dropped_by_reason.get(kind, 0) + 1
                    continue
                headers = record.http_headers
                if headers is None or headers.status_code is None:
                    _error(stats, "http_decode_error")
                    continue
                content_type = headers.get("Content-Type")
                try:
                    if "chunked" in (headers.get("Transfer-Encoding") or "").lower():
                        body = _dechunk(body)
                    body = _decode_content(body, headers.get("Content-Encoding"))
                except (OSError, EOFError, zlib.error, ValueError) as err:
                    _error(stats, "http_decode_error" if not isinstance(err, ValueError) else str(err))
                    continue
                _raw_row(
                    rows,
                    record.record_id or f"{_file_key(path)}:{record.stream_pos}",
                    record.headers.get("WARC-Target-URI"),
                    path,
                    body,
                    content_type,
                )
                stats.docs_in += 1
                stats.docs_kept += 1
                stats.bytes_in += len(body)
                stats.bytes_kept += len(body)
                size += len(body)
                if size >= cfg.batch_bytes:
                    yield _finish(rows, RAW_SCHEMA), stats
                    rows, stats, size = _raw_rows(), _new_stats(), 0
            damage = _gzip_damage(raw, last_start) if gzipped else None
            if damage is not None and last_whole:
                _error(stats, "warc_truncated_record" if damage == "truncated_stream" else "warc_broken_record")
    except STREAM_ERRORS:
        _error(stats, "warc_broken_record")
    if records == 0 and not stats.docs_in:
        _error(stats, "empty_file")
    if stats.docs_in:
        yield _finish(rows, RAW_SCHEMA), stats


def _dechunk(body: bytes) -> bytes:
    """Undo HTTP chunked transfer encoding; bodies stored already de-chunked pass through."""
    out: list[bytes] = []
    pos = 0
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


def _raw_rows() -> Rows:
    return {name: [] for name in RAW_SCHEMA.names}


def _raw_row(rows: Rows, doc_id: str, url: str | None, source: str, body: bytes, content_type: str | None) -> None:
    _core_row(rows, doc_id, "", url, source)
    rows["html"].append(body)
    rows["content_type"].append(content_type)


# ---------------------------------------------------------------- HTML


def read_html(path: str, cfg: InputConfig) -> Iterator[tuple[pa.RecordBatch, StageStats]]:
    """One HTML file (optionally .gz) is one document."""
    stats = _new_stats()
    rows = _raw_rows()
    with open_input(path) as stream:
        body = stream.read()
    if stream.damage is not None:
        _error(stats, stream.damage)
    elif not body.strip():
        _error(stats, "empty_file")
    else:
        _raw_row(rows, _file_key(path), None, path, body, "text/html")
        stats.docs_in = stats.docs_kept = 1
        stats.bytes_in = stats.bytes_kept = len(body)
    yield _finish(rows, RAW_SCHEMA), stats


READERS = {"jsonl": read_jsonl, "parquet": read_parquet, "warc": read_warc, "html": read_html}


def read_file(path: str, cfg: InputConfig) -> Iterator[tuple[pa.RecordBatch, StageStats]]:
    """Batches and read statistics of one input file in the configured format, documents over
    `max_doc_bytes` dropped or truncated."""
    for batch, stats in READERS[cfg.format](path, cfg):
        yield _cap(batch, stats, cfg), stats


def _cap(batch: pa.RecordBatch, stats: StageStats, cfg: InputConfig) -> pa.RecordBatch:
    sizes = doc_bytes(batch)
    over = sizes > cfg.max_doc_bytes
    if not over.any():
        return batch
    rows = np.flatnonzero(over)
    if cfg.oversize == "truncate":
        # Per-row Python, for the few oversized rows only: a cut must fall on a UTF-8 boundary.
        name = "html" if "html" in batch.schema.names else "text"
        column = batch.column(name)
        cut = pa.array([_cut(v, cfg.max_doc_bytes) for v in column.take(pa.array(rows)).to_pylist()], column.type)
        index = batch.schema.get_field_index(name)
        stats.extra["truncated"] = stats.extra.get("truncated", 0) + len(rows)
        stats.bytes_kept -= int(sizes[rows].sum()) - len(rows) * cfg.max_doc_bytes
        return batch.set_column(index, batch.schema.field(index), replace_rows(column, rows, cut))
    stats.docs_kept -= len(rows)
    stats.docs_dropped += len(rows)
    stats.bytes_kept -= int(sizes[rows].sum())
    stats.dropped_by_reason["too_large"] = stats.dropped_by_reason.get("too_large", 0) + len(rows)
    dropped = batch.take(pa.array(rows))
    stats.add_examples(
        "too_large",
        dropped.column("id").to_pylist(),
        dropped.column("url").to_pylist(),
        [f"{size:,} bytes" for size in sizes[rows].tolist()],
    )
    return batch.filter(pa.array(~over))


def _cut(value: str | bytes, limit: int) -> str | bytes:
    """The first `limit` bytes of a text (or page), less a character split by the cut."""
    if isinstance(value, bytes):
        return value[:limit]
    return value.encode()[:limit].decode("utf-8", errors="ignore")
