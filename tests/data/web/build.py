"""Rebuild the extracted-pages fixture from the shared evaluation pages.

    python tests/data/web/build.py /path/to/shared/data

Runs the `extract` stage (default settings) over every page of
article_extraction_benchmark (MIT) and trafilatura_eval (Apache-2.0) and writes the
non-empty results, sorted by id, to extracted.jsonl.gz beside this file. The rules parity
test and the extraction tests read that file, so they need neither the pages nor the time
to extract them.
"""
from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import pyarrow as pa

from refinery.pipeline.schema import RAW_SCHEMA
from refinery.stages.extract import Extract, ExtractParams

HERE = Path(__file__).resolve().parent


def pages(shared: Path):
    for path in sorted((shared / "article_extraction_benchmark" / "html").glob("*.html.gz")):
        yield f"aeb/{path.name.removesuffix('.html.gz')}", path
    for path in sorted((shared / "trafilatura_eval" / "html").glob("*.gz")):
        yield f"trafilatura/{path.name.removesuffix('.gz')}", path


def main(shared: Path) -> None:
    stage = Extract(ExtractParams())
    stage.setup()
    rows = []
    for doc_id, path in pages(shared):
        body = gzip.decompress(path.read_bytes())
        batch = pa.RecordBatch.from_pylist(
            [{"id": doc_id, "text": "", "url": None, "source": str(path.relative_to(shared)), "html": body,
              "content_type": "text/html"}], schema=RAW_SCHEMA)
        verdict = stage.process(batch)
        text = verdict.batch.column("text")[0].as_py()
        if text.strip() and not verdict.failed and not verdict.errors:
            rows.append({"id": doc_id, "source": str(path.relative_to(shared)), "text": text,
                         "title": verdict.batch.column("title")[0].as_py()})
    with gzip.open(HERE / "extracted.jsonl.gz", "wt", encoding="utf-8", compresslevel=9) as out:
        for row in sorted(rows, key=lambda r: r["id"]):
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{len(rows)} pages")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
