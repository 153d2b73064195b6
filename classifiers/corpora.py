"""Readers for the real text bundled in the shared data folder, used to build the shipped models.

Each reader yields `(doc_id, text)`; documents are the unit of the train/test split so that no
document contributes to both sides. Licenses are in each folder's SOURCE.md and are recorded in
the model cards.
"""
from __future__ import annotations

import csv
import json
import re
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from typing import Iterator

_PARAGRAPH = re.compile(r"\n\s*\n")


def nltk_plaintext(root: Path, corpus: str) -> Iterator[tuple[str, str]]:
    """One document per file of an nltk plain-text corpus zip (inaugural, state_union, webtext, genesis)."""
    with zipfile.ZipFile(root / "nltk_corpora" / f"{corpus}.zip") as z:
        for name in sorted(z.namelist()):
            if name.endswith(".txt"):
                yield f"{corpus}/{Path(name).stem}", z.read(name).decode("utf-8", "replace").replace("\r\n", "\n")


def nps_chat(root: Path) -> Iterator[tuple[str, str]]:
    """Each chat session as one document of posts, one per line."""
    with zipfile.ZipFile(root / "nltk_corpora" / "nps_chat.zip") as z:
        for name in sorted(z.namelist()):
            if name.endswith(".xml"):
                tree = ET.fromstring(z.read(name))
                posts = [(p.text or "").strip() for p in tree.iter("Post")]
                yield f"nps_chat/{Path(name).stem}", "\n".join(p for p in posts if p)


def sms(root: Path) -> Iterator[tuple[str, str, str]]:
    """(doc_id, label, text) for every SMS message (label ham or spam)."""
    with open(root / "sms_spam_collection" / "SMSSpamCollection.tsv", encoding="utf-8", newline="") as f:
        for i, row in enumerate(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)):
            if len(row) >= 2 and row[0] in ("ham", "spam"):
                yield f"sms/{i}", row[0], "\t".join(row[1:])


def article_bodies(root: Path) -> Iterator[tuple[str, str]]:
    """Hand-annotated main text of the extraction benchmark's news and blog articles."""
    truth = json.loads((root / "article_extraction_benchmark" / "ground-truth.json").read_text(encoding="utf-8"))
    for key in sorted(truth):
        body = (truth[key].get("articleBody") or "").strip()
        if body:
            yield f"articles/{key}", body


def boilerplate(root: Path) -> Iterator[tuple[str, str]]:
    """Per page, the annotated boilerplate snippets that must not be in the main text (menus,
    share buttons, comment headers), one per line."""
    data = json.loads((root / "trafilatura_eval" / "evaldata.json").read_text(encoding="utf-8"))
    for url in sorted(data):
        snippets = [s.strip() for s in data[url].get("without") or [] if s and s.strip()]
        if snippets:
            yield f"boilerplate/{url}", "\n".join(snippets)


def chunks(text: str, target_chars: int, by_lines: bool = False) -> list[str]:
    """Consecutive paragraphs (or lines) joined until about `target_chars` each."""
    parts = [p.strip() for p in (text.split("\n") if by_lines else _PARAGRAPH.split(text)) if p.strip()]
    out: list[str] = []
    current: list[str] = []
    size = 0
    for part in parts:
        current.append(part)
        size += len(part) + 1
        if size >= target_chars:
            out.append("\n".join(current))
            current, size = [], 0
    if current:
        out.append("\n".join(current))
    return out


def paragraphs(text: str, min_chars: int = 1) -> list[str]:
    return [p.strip() for p in _PARAGRAPH.split(text) if len(p.strip()) >= min_chars]
