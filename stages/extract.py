"""HTML → main text with trafilatura, one page at a time in a supervised child process.

trafilatura and lxml can spend minutes on a pathological page and cannot be interrupted from
inside (the time goes in C code), so pages are extracted in a child process that is killed and
restarted when a page overruns `timeout_s`; the page is counted as `timeout` and the batch goes
on. Cheap checks (size, content type, binary signatures) run first in the parent; charset
decoding runs in the child, under the same time limit, because detection on junk can be slow.
"""

from __future__ import annotations

import codecs
import os
import pickle
import re
import select
import struct
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
from pydantic import Field

from refinery.pipeline.stage import MapStage, StageParams, Verdict, set_column
from refinery.pipeline.stats import HistogramSpec

HTML_TYPES = ("text/html", "application/xhtml+xml")
# Signatures of formats that are sometimes served as text/html.
BINARY_MAGIC = (
    b"%PDF",
    b"\x89PNG",
    b"GIF8",
    b"\xff\xd8\xff",
    b"PK\x03\x04",
    b"\x1f\x8b",
    b"\x00\x00\x01\x00",
    b"RIFF",
    b"OggS",
    b"ID3",
    b"\x7fELF",
    b"MZ",
)
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.I)
_HEADER_CHARSET = re.compile(r"charset\s*=\s*[\"']?([a-zA-Z0-9_.:-]+)", re.I)
_FRAME = struct.Struct("<Q")
# Labels that browsers decode as a superset (WHATWG Encoding Standard); pages rely on it.
_WHATWG_SUPERSETS = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "iso8859-1": "cp1252",
    "ascii": "cp1252",
    "latin-1": "cp1252",
    "iso8859-9": "cp1254",
    "tis-620": "cp874",
    "euc_kr": "cp949",
}


class ExtractParams(StageParams):
    # trafilatura settings. FineWeb ran trafilatura with favour_precision=True and no comments.
    favor_precision: bool = True
    favor_recall: bool = False
    include_comments: bool = False
    include_tables: bool = True
    # trafilatura's `deduplicate` keeps a cache across pages, which would make the output depend
    # on the order pages reach a worker (runners must agree), so it is not offered here.
    fast: bool = False
    # Per-page wall-clock limit in the child process; an overrunning page is counted `timeout`.
    timeout_s: float = Field(default=10.0, gt=0)
    # Larger pages are dropped as `too_large` (Common Crawl truncates records at 1 MiB).
    max_html_bytes: int = Field(default=5_000_000, gt=0)
    # Accepted HTTP Content-Type values; a missing header means "sniff the body".
    content_types: list[str] = list(HTML_TYPES)


def _charset_candidates(body: bytes, content_type: str | None) -> list[str]:
    found = []
    if content_type:
        m = _HEADER_CHARSET.search(content_type)
        if m:
            found.append(m.group(1))
    m = _META_CHARSET.search(body[:4096])
    if m:
        found.append(m.group(1).decode("ascii", "ignore"))
    found.append("utf-8")
    names = []
    for name in found:
        try:
            canonical = codecs.lookup(name).name
        except LookupError:
            continue
        names.append(_WHATWG_SUPERSETS.get(canonical, canonical))
    return list(dict.fromkeys(names))


def decode_html(body: bytes, content_type: str | None) -> str | None:
    """Page bytes → str: BOM, then HTTP and <meta> charsets, UTF-8, then statistical detection."""
    for bom, name in (
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if body.startswith(bom):
            return body[len(bom) :].decode(name, errors="replace")
    for name in _charset_candidates(body, content_type):
        try:
            return body.decode(name)
        except (UnicodeDecodeError, LookupError):
            continue
    from charset_normalizer import from_bytes

    best = from_bytes(body[:200_000]).best()
    if best is None:
        return None
    return body.decode(best.encoding, errors="replace")


def looks_binary(body: bytes) -> bool:
    head = body[:1024]
    if head.startswith(BINARY_MAGIC):
        return True
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return False
    return head.count(b"\x00") > 0 or sum(b < 9 or 13 < b < 32 for b in head) > len(head) // 10


def _extract_page(body: bytes, content_type: str | None, url: str | None, options) -> tuple[str, str, str | None]:
    """(status, text, title) for one page; runs in the child process."""
    from trafilatura import extract
    from trafilatura.metadata import extract_title
    from trafilatura.utils import load_html

    html = decode_html(body, content_type)
    if html is None:
        return "undecodable", "", None
    tree = load_html(html)
    if tree is None:
        return "unparseable", "", None
    title = extract_title(tree)
    options.url = url
    text = extract(tree, options=options)
    return ("ok" if text and text.strip() else "empty_extraction"), text or "", title


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes | None:
    """n bytes from fd, or None at EOF or when the deadline passes."""
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _send(stream, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_FRAME.pack(len(data)) + data)
    stream.flush()


def serve() -> None:
    """Child process loop: read (settings) once, then (body, content_type, url) frames; answer each."""
    from trafilatura.settings import Extractor

    inp, out = sys.stdin.buffer.fileno(), sys.stdout.buffer
    sys.stdout = sys.stderr  # stray prints from libraries must not corrupt the frames
    header = _read_exact(inp, _FRAME.size, None)
    settings = pickle.loads(_read_exact(inp, _FRAME.unpack(header)[0], None))
    options = Extractor(output_format="txt", **settings)
    while True:
        header = _read_exact(inp, _FRAME.size, None)
        if header is None:
            return
        body, content_type, url = pickle.loads(_read_exact(inp, _FRAME.unpack(header)[0], None))
        try:
            answer = _extract_page(body, content_type, url, options)
        except Exception as exc:  # noqa: BLE001 - reported to the parent as a parse failure
            answer = ("parse_error", "", type(exc).__name__)
        _send(out, answer)


class ExtractWorker:
    """A child process running `serve()`, restarted after a timeout or a crash."""

    def __init__(self, settings: dict):
        self.settings = settings
        self.proc: subprocess.Popen | None = None

    def _start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from refinery.stages.extract import serve; serve()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        _send(self.proc.stdin, self.settings)

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc.stdin.close()
            self.proc.stdout.close()
            self.proc = None

    def extract(
        self, body: bytes, content_type: str | None, url: str | None, timeout: float
    ) -> tuple[str, str, str | None]:
        if self.proc is None or self.proc.poll() is not None:
            self.close()
            self._start()
        try:
            _send(self.proc.stdin, (body, content_type, url))
        except (BrokenPipeError, OSError):
            self.close()
            return "worker_crash", "", None
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        header = _read_exact(fd, _FRAME.size, deadline)
        payload = None if header is None else _read_exact(fd, _FRAME.unpack(header)[0], deadline)
        if payload is None:
            crashed = self.proc.poll() is not None
            self.close()
            return ("worker_crash" if crashed else "timeout"), "", None
        return pickle.loads(payload)

    def __del__(self):
        self.close()


# Outcomes that are drop reasons (the page is not text we want) vs errors (we could not judge it).
DROP_REASONS = ("not_html", "too_large", "binary_content", "empty_html", "empty_extraction")
ERROR_KINDS = ("timeout", "worker_crash", "undecodable", "unparseable", "parse_error")


class Extract(MapStage):
    """Consumes the raw `html`/`content_type` columns; sets `text`, adds `title`."""

    kind = "extract"
    Params = ExtractParams
    columns = {"title": pa.string(), "html_bytes": pa.int64()}
    removes = ("html", "content_type")
    histograms = {"html_bytes": HistogramSpec(100, 1e8, 24, log=True)}

    def __init__(self, params, **kw):
        super().__init__(params, **kw)
        self.worker: ExtractWorker | None = None

    def setup(self) -> None:
        p: ExtractParams = self.params
        self.worker = ExtractWorker(
            {
                "precision": p.favor_precision,
                "recall": p.favor_recall,
                "comments": p.include_comments,
                "tables": p.include_tables,
                "fast": p.fast,
            }
        )

    def _precheck(self, body: bytes | None, content_type: str | None) -> str | None:
        p: ExtractParams = self.params
        if body is None or not body.strip():
            return "empty_html"
        if content_type:
            mime = content_type.split(";", 1)[0].strip().lower()
            if mime and mime not in p.content_types:
                return "not_html"
        if len(body) > p.max_html_bytes:
            return "too_large"
        if looks_binary(body):
            return "binary_content"
        return None

    def process(self, batch: pa.RecordBatch) -> Verdict:
        n = batch.num_rows
        bodies = batch.column("html").to_pylist()
        types = batch.column("content_type").to_pylist() if "content_type" in batch.schema.names else [None] * n
        urls = batch.column("url").to_pylist() if "url" in batch.schema.names else [None] * n
        texts, titles = [""] * n, [None] * n
        outcome = np.full(n, None, dtype=object)
        for i, body in enumerate(bodies):
            reason = self._precheck(body, types[i])
            if reason is None:
                reason, texts[i], titles[i] = self.worker.extract(body, types[i], urls[i], self.params.timeout_s)
                if reason == "parse_error":
                    titles[i] = None
            outcome[i] = None if reason == "ok" else reason
        batch = set_column(batch, "text", pa.array(texts, type=pa.large_string()))
        batch = set_column(batch, "title", pa.array(titles, type=pa.string()))
        sizes = [len(b) if b is not None else 0 for b in bodies]
        batch = set_column(batch, "html_bytes", pa.array(sizes, type=pa.int64()))
        failed = {r: outcome == r for r in DROP_REASONS if (outcome == r).any()}
        errors = {r: outcome == r for r in ERROR_KINDS if (outcome == r).any()}
        return Verdict(batch, failed, errors)
