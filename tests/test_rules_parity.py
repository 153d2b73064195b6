"""Keep/drop parity with datatrove's GopherQuality, GopherRepetition, C4Quality and FineWebQuality
filters on 242 real extracted pages (every third page of the fixture).

Both sides run with English settings on every page (datatrove's filters are configured per
language; ours are told `lang: en`), so the word splitter is the only difference: datatrove uses
spaCy's English tokenizer, we use one regular expression that mimics it. The few remaining
disagreements (under 1% per filter, measured on all 724 pages: Gopher quality 4, repetition 1,
C4 3-4, FineWeb 3) are pages within a hair of a threshold where the two splitters count a
different number of words or sentences:
- Gopher quality: the share of words with a letter sits at 0.79-0.81 (threshold 0.8), and
  spaCy's and our handling of e-mail fragments, "@"-handles and fractions move it across.
- C4: spaCy's sentencizer does not end a sentence after an abbreviation it knows ("Nr.", "z.B.")
  while we do; pages with exactly 5 sentences flip.
- FineWeb list ratio: Chinese pages judged as English, where runs of Han characters are words
  and the two splitters cut them at different punctuation.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pytest

pytest.importorskip("spacy")
filters = pytest.importorskip("datatrove.pipeline.filters")
from datatrove.data import Document  # noqa: E402

from refinery.stages.rules import Rules, RulesParams  # noqa: E402

PAGES = [json.loads(line) for line in gzip.open(Path(__file__).parent / "data" / "web" / "extracted.jsonl.gz", "rt")][
    ::3
]
FAMILIES = (
    "gopher_quality",
    "gopher_repetition",
    "c4_quality",
    "c4_paragraph",
    "c4_badwords",
    "fineweb_quality",
    "internlm2",
)
PEERS = {
    "gopher_quality": filters.GopherQualityFilter,
    "gopher_repetition": filters.GopherRepetitionFilter,
    "c4_quality": filters.C4QualityFilter,
    "fineweb_quality": filters.FineWebQualityFilter,
}


@pytest.mark.parametrize("family", sorted(PEERS))
def test_keep_drop_agreement(family):
    ours = Rules(RulesParams(**{f: None for f in FAMILIES if f != family}))
    peer = PEERS[family]()
    batch = pa.RecordBatch.from_pylist([{"id": p["id"], "text": p["text"], "lang": "en"} for p in PAGES])
    failed = ours.process(batch).batch.column("rules_failed").to_pylist()
    disagree = []
    for page, rules in zip(PAGES, failed):
        keep_peer = peer.filter(Document(text=page["text"], id=page["id"])) is True
        if keep_peer != (not rules):
            disagree.append(page["id"])
    assert len(PAGES) >= 240
    assert len(disagree) / len(PAGES) <= 0.01, disagree
