"""The extract stage on real WARC records and pages, and on bad input."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pytest

from refinery.pipeline.config import InputConfig
from refinery.pipeline.readers import read_warc
from refinery.pipeline.schema import RAW_SCHEMA
from refinery.pipeline.stage import run_map_stage
from refinery.stages.extract import Extract, ExtractParams, decode_html

WEB = Path(__file__).parent / "data" / "web"
SAMPLE_WARC = Path(__file__).parents[1] / "data" / "sample" / "commoncrawl-sample.warc.gz"


@pytest.fixture(scope="module")
def stage():
    st = Extract(ExtractParams())
    st.setup()
    yield st
    st.worker.close()


def raw_batch(pages: list[tuple[bytes | None, str | None]]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist(
        [
            {"id": f"d{i}", "text": "", "url": None, "source": "test", "html": body, "content_type": ctype}
            for i, (body, ctype) in enumerate(pages)
        ],
        schema=RAW_SCHEMA,
    )


def test_fixture_matches_fresh_extraction(stage):
    fixture = {json.loads(line)["id"]: json.loads(line) for line in gzip.open(WEB / "extracted.jsonl.gz", "rt")}
    pages = sorted((WEB / "pages").glob("*.gz"))
    assert len(pages) == 3
    batch = raw_batch([(gzip.decompress(p.read_bytes()), "text/html") for p in pages])
    out, stats = run_map_stage(stage, batch)
    assert stats.docs_kept == 3
    assert "html" not in out.schema.names and "content_type" not in out.schema.names
    for page, text, title in zip(pages, out.column("text").to_pylist(), out.column("title").to_pylist()):
        row = fixture["trafilatura/" + page.name.removesuffix(".gz")]
        assert text == row["text"]
        assert title == row["title"]


def test_warc_end_to_end(stage):
    path = str(SAMPLE_WARC)
    batches = [b for b, _ in read_warc(path, InputConfig(paths=[path], format="warc")) if b.num_rows]
    batch = pa.Table.from_batches(batches).combine_chunks().to_batches()[0]
    out, stats = run_map_stage(stage, batch)
    assert stats.docs_in == 16
    assert stats.docs_in == stats.docs_kept + stats.docs_dropped + stats.docs_errored
    assert stats.docs_kept >= 12
    texts = out.column("text").to_pylist()
    assert all(t.strip() for t in texts)
    # pages in windows-1251 and GBK come out as Cyrillic and Han text, not mojibake
    assert any("О компании" in t for t in texts)
    assert sum(any("\u4e00" <= c <= "\u9fff" for c in t) for t in texts) >= 8
    assert sum(1 for t in out.column("title").to_pylist() if t) >= 12


def test_bad_input_is_counted_not_raised(stage):
    page = (
        b"<html><head><title>T</title></head><body><article><p>"
        + b"Real words in a sentence. " * 40
        + b"</p></article></body></html>"
    )
    pages = [
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, "text/html"),  # binary junk served as HTML
        (b"<html><body>" + b"<p>x</p>" * 7_000_000 + b"</body></html>", "text/html"),  # a 50 MB page
        (b"", "text/html"),
        (b"   \n\t ", None),
        (b"%PDF-1.4 ...", "application/pdf"),
        (b"<html><body><div></div></body></html>", "text/html"),  # nothing to extract
        (page, "text/html; charset=utf-8"),
    ]
    out, stats = run_map_stage(stage, raw_batch(pages))
    assert stats.dropped_by_reason == {
        "binary_content": 1,
        "too_large": 1,
        "empty_html": 2,
        "not_html": 1,
        "empty_extraction": 1,
    }
    assert stats.docs_kept == 1 and "Real words" in out.column("text")[0].as_py()
    assert out.column("title")[0].as_py() == "T"


def test_timeout_kills_the_page_not_the_worker():
    st = Extract(ExtractParams(timeout_s=0.001))
    st.setup()
    big = b"<html><body>" + b"<div><p>Some words in a paragraph here.</p></div>" * 100_000 + b"</body></html>"
    out, stats = run_map_stage(st, raw_batch([(big, "text/html")]))
    assert stats.errors_by_kind == {"timeout": 1}
    st.params.timeout_s = 30
    page = (
        b"<html><body><article><p>" + b"A sentence with enough words to keep. " * 30 + b"</p></article></body></html>"
    )
    out, stats = run_map_stage(st, raw_batch([(page, "text/html")]))
    assert stats.docs_kept == 1
    st.worker.close()


def test_charset_detection():
    text = "Съешь же ещё этих мягких французских булок"
    assert decode_html(text.encode("cp1251"), "text/html; charset=windows-1251") == text
    meta = '<html><head><meta charset="gb2312"></head><body>中文页面，測試</body></html>'
    assert decode_html(meta.encode("gb18030"), None) == meta  # gb2312 label, GBK-only characters
    assert decode_html("Grüße".encode("utf-8"), "text/html; charset=bogus-charset") == "Grüße"
    assert decode_html(b"\xef\xbb\xbfhello", None) == "hello"
