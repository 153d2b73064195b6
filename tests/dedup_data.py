"""Dedup test inputs built from the fixture files in tests/data/dedup/ (see SOURCE.md there)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

DATA = Path(__file__).parent / "data" / "dedup"


def _tsv(name: str) -> list[tuple[str, str]]:
    return [tuple(line.rstrip("\n").split("\t", 1)) for line in (DATA / name).open(encoding="utf-8")]


def sms_table() -> pa.Table:
    """304 SMS messages with real exact and near duplicates; ids `sms-<line>`."""
    rows = _tsv("sms_near_duplicates.tsv")
    return pa.table({"id": [r[0] for r in rows], "text": pa.array([r[1] for r in rows], pa.large_string())})


def multilingual_table() -> pa.Table:
    """156 real sentences in 13 languages (Latin, Cyrillic, Arabic, Devanagari, CJK, Hangul,
    Thai, Greek scripts); ids `<lang>-<n>`."""
    rows = _tsv("multilingual.tsv")
    return pa.table(
        {
            "id": [f"{lang}-{i}" for i, (lang, _) in enumerate(rows)],
            "text": pa.array([r[1] for r in rows], pa.large_string()),
        }
    )
