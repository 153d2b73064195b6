"""The document schema every stage reads and writes: `id`, `text`, `url`, `source`, plus the typed
columns stages add."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

CORE_FIELDS = [
    pa.field("id", pa.string(), nullable=False),
    pa.field("text", pa.large_string(), nullable=False),
    pa.field("url", pa.string(), nullable=True),
    pa.field("source", pa.string(), nullable=False),
]
CORE_SCHEMA = pa.schema(CORE_FIELDS)

# Raw web input (WARC/HTML readers) carries the undecoded page beside an empty `text`;
# the `extract` stage turns it into text and removes these columns.
RAW_FIELDS = [
    pa.field("html", pa.large_binary(), nullable=True),
    pa.field("content_type", pa.string(), nullable=True),
]
RAW_SCHEMA = pa.schema(CORE_FIELDS + RAW_FIELDS)


def type_name(dtype: pa.DataType) -> str:
    """An Arrow type as text, without the child field names that Parquet rewrites (item/element)."""
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        prefix = "large_list" if pa.types.is_large_list(dtype) else "list"
        return f"{prefix}<{type_name(dtype.value_type)}>"
    return str(dtype)


def doc_bytes(batch: pa.RecordBatch | pa.Table) -> np.ndarray:
    """Size of each document in bytes: its raw page while it has one, else its UTF-8 text."""
    text_len = pc.binary_length(batch.column("text")).fill_null(0).to_numpy(zero_copy_only=False)
    sizes = np.asarray(text_len, dtype=np.int64)
    if "html" in batch.schema.names:
        html_len = pc.binary_length(batch.column("html")).fill_null(0).to_numpy(zero_copy_only=False)
        sizes = np.maximum(sizes, html_len)
    return sizes


def replace_rows(array: pa.Array, rows: np.ndarray, values: pa.Array) -> pa.Array:
    """`array` with the values at `rows` (ascending indices) replaced by `values`, in Arrow."""
    index = np.arange(len(array))
    index[rows] = len(array) + np.arange(len(rows))
    return pa.concat_arrays([array, values]).take(pa.array(index))


def stable_id(source: str, offset: int) -> str:
    """Id of a record that carries none of its own: hash of its file and position."""
    return hashlib.blake2b(f"{source}\0{offset}".encode(), digest_size=12).hexdigest()


def empty_like(schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([], schema=schema)
