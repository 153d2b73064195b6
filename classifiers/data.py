"""Labeled JSONL (`{"text": ..., "label": ...}` per line) for training and evaluation.

Bad lines (not JSON, no text, no label) are skipped and counted by reason, never fatal.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path


def read_labeled(
    path: str | Path, text_key: str = "text", label_key: str = "label"
) -> tuple[list[tuple[str, str]], Counter]:
    examples: list[tuple[str, str]] = []
    skipped: Counter = Counter()
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                skipped["invalid_json"] += 1
                continue
            if not isinstance(row, dict):
                skipped["not_an_object"] += 1
                continue
            text, label = row.get(text_key), row.get(label_key)
            if not isinstance(text, str) or not text.strip():
                skipped["missing_text"] += 1
            elif label is None or not str(label).strip() or " " in str(label):
                skipped["missing_or_bad_label"] += 1
            else:
                examples.append((text, str(label)))
    return examples, skipped
