"""The `decontaminate` stage: documents that quote an evaluation benchmark are dropped.

A document is contaminated when it shares at least `min_matches` distinct word n-grams (13 by
default, as in the GPT-3 and Llama reports) with any item of the benchmark files. Every string
of every benchmark row is indexed (question, choices, answer, passage, nested lists), each on its
own and all of a row's strings joined in order, so a document that quotes a question followed
by its answer is found too. Benchmark text and documents are normalized alike, by dedup's
shingle hashing (NFKC, lower case, punctuation and spacing folded, each CJK character a word),
and the n-grams are compared as 64-bit hashes (a chance collision with a million-n-gram index is
about one in 10^13 per n-gram). A string with fewer than `ngram` words has no n-gram and cannot
be found; the index's statistics count those items.

The index is built once per job on the driver (`prepare`) into the run directory as an Arrow
file: every n-gram hash, sorted, with the benchmark it comes from. Workers memory-map it from a
local run directory (read once per worker from an object store), and look up a whole batch's
n-grams with one `searchsorted`, so the local, Ray and Spark runners decide alike.
"""

from __future__ import annotations

import gzip
import io
import json
import posixpath
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field, field_validator

from refinery.pipeline.config import expand_paths
from refinery.pipeline.readers import open_raw
from refinery.pipeline.stage import MapStage, StageParams, Verdict, set_column
from refinery.pipeline.stats import EXAMPLES_PER_REASON, HistogramSpec
from refinery.stages.dedup.text import normalize_words, shingle_hashes, words

REASON = "contaminated"
FORMATS = (".jsonl", ".jsonl.gz", ".json", ".parquet")


class DecontaminateParams(StageParams):
    # JSONL or Parquet files of benchmark rows: paths (relative to the config's folder or the
    # working directory), globs or URIs. Stored as the files they match.
    benchmarks: list[str] = Field(min_length=1)
    ngram: int = Field(default=13, ge=3, le=64)
    # Distinct shared n-grams that make a document contaminated.
    min_matches: int = Field(default=1, ge=1)

    @field_validator("benchmarks", mode="before")
    @classmethod
    def _one_or_many(cls, value):
        return [value] if isinstance(value, str) else value


class BenchmarkError(ValueError):
    """A benchmark file that cannot be read as benchmark rows."""


def benchmark_rows(path: str) -> list[dict]:
    """The rows of one benchmark file (JSONL, optionally gzip, a JSON list, or Parquet)."""
    if not path.endswith(FORMATS):
        raise BenchmarkError(f"{path}: a benchmark is a {', '.join(FORMATS)} file")
    try:
        with open_raw(path) as raw:
            if path.endswith(".parquet"):
                return pq.read_table(raw).to_pylist()
            data = raw.read()
    except (OSError, pa.ArrowInvalid) as err:
        raise BenchmarkError(f"{path}: cannot read: {err}") from None
    try:
        text = (gzip.decompress(data) if path.endswith(".gz") else data).decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise BenchmarkError(f"{path}: cannot decode: {err}") from None
    if path.endswith(".json"):
        rows = _parse(path, text, 1)
        if not isinstance(rows, list):
            raise BenchmarkError(f"{path}: a .json benchmark holds a list of rows")
        return rows
    return [_parse(path, line, number) for number, line in enumerate(text.splitlines(), 1) if line.strip()]


def _parse(path: str, text: str, line: int):
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise BenchmarkError(f"{path}:{line}: not JSON ({err.msg})") from None


def row_strings(value) -> list[str]:
    """Every string inside a row (dict values and list items, depth first, in order)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return [s for item in value for s in row_strings(item)]
    return []


def benchmark_names(paths: list[str]) -> list[str]:
    """Short names for the statistics: the file name, or the whole path where two share one."""
    bases = [posixpath.basename(p.rstrip("/")) for p in paths]
    return [b if bases.count(b) == 1 else p for b, p in zip(bases, paths)]


def build_index(paths: list[str], ngram: int) -> pa.Table:
    """The sorted (hash, benchmark) table of every n-gram of the benchmarks; its figures in the
    schema's metadata (`figures`, JSON)."""
    hashes, sources = [], []
    figures = {"benchmark_rows": 0, "benchmark_rows_too_short": 0}
    for number, path in enumerate(paths):
        texts, whole = [], []
        for row in benchmark_rows(path):
            strings = [s for s in row_strings(row) if s.strip()]
            texts += strings + ([" ".join(strings)] if len(strings) > 1 else [])
            whole.append(len(texts) - 1)  # the row's last text holds all its words
        texts = pa.array(texts, pa.large_string())
        counts = pc.list_value_length(pc.utf8_split_whitespace(normalize_words(texts))).to_numpy(zero_copy_only=False)
        found, offsets = shingle_hashes(texts, ngram, bits=64)
        unique = np.unique(found[np.repeat(counts >= ngram, np.diff(offsets))])
        hashes.append(unique)
        sources.append(np.full(len(unique), number, dtype=np.uint32))
        figures["benchmark_rows"] += len(whole)
        figures["benchmark_rows_too_short"] += int((counts[whole] < ngram).sum()) if whole else 0
    table = pa.table({"hash": np.concatenate(hashes), "benchmark": np.concatenate(sources)}).sort_by("hash")
    figures["benchmark_ngrams"] = table.num_rows
    return table.replace_schema_metadata({"figures": json.dumps(figures)})


class Decontaminate(MapStage):
    kind = "decontaminate"
    Params = DecontaminateParams
    columns = {"contamination_ngrams": pa.int32(), "contamination_benchmarks": pa.string()}
    histograms = {"contamination_ngrams": HistogramSpec(0, 50, 25)}

    def __init__(self, params, **kwargs):
        super().__init__(params, **kwargs)
        self.run = None
        self.names = benchmark_names(params.benchmarks)
        self.hashes = self.sources = None

    @classmethod
    def check_params(cls, params: DecontaminateParams, base) -> DecontaminateParams:
        """Every benchmark pattern must match files that read as benchmark rows; the matched
        files are stored, so the resolved job and every worker use the same ones."""
        benchmarks = expand_paths(params.benchmarks, Path(base))
        for path in benchmarks:
            benchmark_rows(path)
        return params.model_copy(update={"benchmarks": benchmarks})

    def prepare(self, run) -> dict:
        """Build the index into the run directory, once per job (a resumed run keeps the index
        its first attempt judged documents with); its figures join the statistics."""
        self.run = run
        if not run.exists(run.stage_index(self.name)):
            table = build_index(self.params.benchmarks, self.params.ngram)
            sink = io.BytesIO()
            with pa.ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table, max_chunksize=len(table) or None)
            run.write_bytes(run.stage_index(self.name), sink.getvalue())
        return {"extra": json.loads(self._index().schema.metadata[b"figures"])}

    def _index(self) -> pa.ipc.RecordBatchFileReader:
        """The index file: memory-mapped from a local run directory, else read as needed."""
        path = self.run.path(self.run.stage_index(self.name))
        return pa.ipc.open_file(pa.memory_map(path) if self.run.local else self.run.fs.open_input_file(path))

    def setup(self) -> None:
        table = self._index().read_all()
        self.hashes = np.asarray(table.column("hash").combine_chunks())
        self.sources = np.asarray(table.column("benchmark").combine_chunks())

    def process(self, batch: pa.RecordBatch) -> Verdict:
        p: DecontaminateParams = self.params
        n = batch.num_rows
        texts = batch.column("text")
        found, offsets = shingle_hashes(texts, p.ngram, bits=64)
        matches = np.zeros(n, dtype=np.int32)
        benchmarks: list[str | None] = [None] * n
        first_hit: dict[int, tuple[int, str]] = {}
        counts: dict[str, int] = {}
        if len(self.hashes) and len(found):
            at = np.minimum(np.searchsorted(self.hashes, found), len(self.hashes) - 1)
            hits = np.flatnonzero(self.hashes[at] == found)  # ascending, so grouped by document
            docs, starts = np.unique(np.searchsorted(offsets, hits, side="right") - 1, return_index=True)
            for doc, mine in zip(docs.tolist(), np.split(hits, starts[1:])):
                distinct = np.unique(found[mine])
                lo, hi = np.searchsorted(self.hashes, distinct), np.searchsorted(self.hashes, distinct, side="right")
                names = [
                    self.names[s]
                    for s in sorted({int(s) for a, b in zip(lo.tolist(), hi.tolist()) for s in self.sources[a:b]})
                ]
                matches[doc] = len(distinct)
                benchmarks[doc] = ",".join(names)
                first_hit[doc] = (int(mine[0] - offsets[doc]), self.names[int(self.sources[at[mine[0]]])])
                if matches[doc] >= p.min_matches:
                    for name in names:
                        counts[f"{REASON}:{name}"] = counts.get(f"{REASON}:{name}", 0) + 1
        contaminated = matches >= p.min_matches
        batch = set_column(batch, "contamination_ngrams", pa.array(matches))
        batch = set_column(batch, "contamination_benchmarks", pa.array(benchmarks, pa.string()))
        verdict = Verdict(batch, failed={REASON: contaminated}, counts=counts)
        shown = np.flatnonzero(contaminated)[:EXAMPLES_PER_REASON].tolist()
        if shown:
            verdict.examples[f"{REASON}_span"] = (
                shown,
                [
                    _span(text, *first_hit[row], p.ngram)
                    for row, text in zip(shown, texts.take(pa.array(shown)).to_pylist())
                ],
            )
        return verdict


def _span(text: str, shingle: int, benchmark: str, ngram: int) -> str:
    """The first shared n-gram, as the normalized words both sides have in common."""
    return f"[{benchmark}] …{' '.join(words(text)[shingle : shingle + ngram])}…"
