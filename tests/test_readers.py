"""Readers stream every supported format and count every bad record under a named kind."""

import pyarrow as pa
import pytest

from refinery.pipeline.config import InputConfig
from refinery.pipeline.readers import read_file
from refinery.pipeline.stats import merge_all


def read_all(path, fmt, **kw):
    cfg = InputConfig(paths=[str(path)], format=fmt, **kw)
    pairs = list(read_file(str(path), cfg))
    batches = [b for b, _ in pairs if b.num_rows]
    table = pa.Table.from_batches(batches) if batches else None
    stats = merge_all([s for _, s in pairs], "read", "read")
    assert stats.balanced()
    return table, stats


@pytest.mark.parametrize(
    "name", ["inaugural-a.jsonl", "inaugural-b.jsonl.gz", "inaugural-c.jsonl.zst", "inaugural-d.parquet"]
)
def test_text_formats_read_every_document(spine_data, name):
    table, stats = read_all(spine_data / name, "parquet" if name.endswith("parquet") else "jsonl")
    assert table.num_rows == 300 == stats.docs_kept
    assert table.schema.field("text").type == pa.large_string()
    assert set(table.column("source").to_pylist()) == {str(spine_data / name)}
    assert len(set(table.column("id").to_pylist())) == 300


def test_jsonl_keeps_given_ids_and_urls(spine_data):
    table, _ = read_all(spine_data / "inaugural-a.jsonl", "jsonl")
    assert table.column("id")[0].as_py() == "1789-Washington.txt#0"
    assert table.column("url")[0].as_py().startswith("https://example.org/")


def test_small_batches_stream(spine_data):
    cfg = InputConfig(paths=["x"], format="jsonl", batch_bytes=20_000)
    sizes = [b.num_rows for b, _ in read_file(str(spine_data / "inaugural-a.jsonl"), cfg)]
    assert len(sizes) > 5 and sum(sizes) == 300


def test_bad_lines_are_counted_by_kind(spine_data):
    table, stats = read_all(spine_data / "bad-lines.jsonl", "jsonl")
    assert table.num_rows == 15
    assert stats.errors_by_kind == {"malformed_json": 1, "invalid_utf8": 1, "not_an_object": 1, "missing_text": 1}


def test_truncated_gzip_keeps_what_was_read(spine_data):
    table, stats = read_all(spine_data / "truncated.jsonl.gz", "jsonl")
    assert 0 < table.num_rows < 85
    assert stats.errors_by_kind.get("truncated_stream") == 1


def test_empty_file_and_wrong_schema(spine_data):
    _, stats = read_all(spine_data / "empty.jsonl", "jsonl")
    assert stats.errors_by_kind == {"empty_file": 1}
    _, stats = read_all(spine_data / "wrong-schema.parquet", "parquet")
    assert stats.errors_by_kind == {"wrong_schema": 2}  # no text column: each of its 2 rows


def test_warc_response_records(spine_data):
    table, stats = read_all(spine_data / "example.warc.gz", "warc")
    assert table.num_rows == 1
    assert table.column("url")[0].as_py() == "http://example.com/"
    assert b"Example Domain" in table.column("html")[0].as_py()
    assert table.column("id")[0].as_py().startswith("<urn:uuid:")
    assert stats.dropped_by_reason  # warcinfo/request records are named, not silently skipped


def test_broken_and_clipped_warc(spine_data):
    table, stats = read_all(spine_data / "example-trunc.warc", "warc")
    # its one response has a gzip body cut short, then the file ends inside a record
    assert table is None and stats.errors_by_kind == {"http_decode_error": 1, "warc_broken_record": 1}
    table, stats = read_all(spine_data / "clipped.warc.gz", "warc")
    assert table is None and stats.errors_by_kind == {"warc_truncated_record": 1}


def test_chunked_transfer_encoding_is_undone(spine_data):
    path = spine_data / "example-iana.org-chunked.warc"
    table, _ = read_all(path, "warc")
    assert table.column("html")[0].as_py().startswith(b"<!doctype html>")


def test_html_file(spine_data):
    table, stats = read_all(spine_data / "page.html", "html")
    assert table.num_rows == 1 and table.column("html")[0].as_py().lstrip().startswith(b"<")


def test_uris_through_fsspec(spine_data):
    import fsspec

    from refinery.pipeline.config import expand_paths

    fs = fsspec.filesystem("memory")
    fs.pipe("/corpus/a.jsonl.gz", (spine_data / "inaugural-b.jsonl.gz").read_bytes())
    fs.pipe("/corpus/b.txt", b"not matched")
    files = expand_paths(["memory://corpus/*.jsonl.gz"], spine_data)
    assert files == ["memory:///corpus/a.jsonl.gz"]
    table, stats = read_all(files[0], "jsonl")
    assert table.num_rows == 300 and stats.docs_kept == 300
