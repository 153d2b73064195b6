"""Readers for the real text bundled in the shared data folder, used to build the shipped models.

Each reader yields `(doc_id, text)`; documents are the unit of the train/test split so that no
document contributes to both sides. Licenses are in each folder's SOURCE.md and are recorded in
the model cards.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
import zipfile
from pathlib import Path
from typing import Iterator

_PARAGRAPH = re.compile(r"\n\s*\n")


def nltk_plaintext(root: Path, corpus: str) -> Iterator[tuple[str, str]]:
    """One document per file of an nltk plain-text corpus zip (inaugural, state_union, genesis)."""
    with zipfile.ZipFile(root / "nltk_corpora" / f"{corpus}.zip") as z:
        for name in sorted(z.namelist()):
            if name.endswith(".txt"):
                yield f"{corpus}/{Path(name).stem}", z.read(name).decode("utf-8", "replace").replace("\r\n", "\n")


def genesis_english(root: Path, parts: int = 10) -> Iterator[tuple[str, str]]:
    """The two public-domain English translations of Genesis (KJV, World English Bible), each cut
    into `parts` consecutive runs of lines. Part k of both translations shares the id
    `genesis/k`, so parallel text never lands on both sides of the train/test split."""
    with zipfile.ZipFile(root / "nltk_corpora" / "genesis.zip") as z:
        for name in ("english-kjv", "english-web"):
            lines = z.read(f"genesis/{name}.txt").decode("utf-8", "replace").splitlines()
            step = -(-len(lines) // parts)
            for k in range(parts):
                # Verses are wrapped lines with no blank lines between them: one paragraph per line.
                yield (
                    f"genesis/{k}",
                    "\n\n".join(line.strip() for line in lines[k * step : (k + 1) * step] if line.strip()),
                )


def udhr_english(root: Path) -> Iterator[tuple[str, str]]:
    """The Universal Declaration of Human Rights in English (public domain), one document per
    run of about 1000 characters of articles."""
    with zipfile.ZipFile(root / "nltk_corpora" / "udhr2.zip") as z:
        text = z.read("udhr2/eng.txt").decode("utf-8", "replace")
    for i, chunk in enumerate(chunks(text.replace("\n", "\n\n"), 1000)):
        yield f"udhr/eng/{i}", chunk


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
    for url, entry in _trafilatura_pages(root):
        snippets = [s.strip() for s in entry.get("without") or [] if s and s.strip()]
        if snippets:
            yield f"trafilatura/{url}", "\n".join(snippets)


def _trafilatura_pages(root: Path) -> Iterator[tuple[str, dict]]:
    data = json.loads((root / "trafilatura_eval" / "evaldata.json").read_text(encoding="utf-8"))
    for url in sorted(data):
        yield url, data[url]


_NAVIGATION = (
    "//nav | //header | //footer | //aside"
    " | //*[contains(@class, 'menu') or contains(@id, 'menu') or contains(@class, 'breadcrumb')]"
)


def navigation(root: Path) -> Iterator[tuple[str, str]]:
    """Per page, the link texts inside its navigation, header, footer, sidebar and menu elements,
    one per line: what a careless extractor keeps of a page's chrome. The id is the page's, as
    in `boilerplate`, so both readings of a page fall on the same side of the split."""
    import lxml.html

    folder = root / "trafilatura_eval" / "html"
    for url, entry in _trafilatura_pages(root):
        path = folder / f"{entry['file']}.gz"
        if not path.is_file():
            continue
        try:
            page = lxml.html.fromstring(gzip.decompress(path.read_bytes()))
        except (ValueError, lxml.etree.ParserError):
            continue
        seen: set[int] = set()
        links: list[str] = []
        for element in page.xpath(_NAVIGATION):
            for link in element.iter("a"):
                if id(link) in seen:
                    continue
                seen.add(id(link))
                text = " ".join(link.text_content().split())
                if text:
                    links.append(text)
        if links:
            yield f"trafilatura/{url}", "\n".join(links)


def lingua_lines(root: Path, kind: str, language: str = "en", group: int = 25) -> Iterator[tuple[str, str]]:
    """Lines of the lingua language-ID test data (`single-words` or `word-pairs`), `group` at a
    time: keyword lists and tag clouds."""
    path = root / "lingua_langid_testdata" / kind / f"{language}.txt.gz"
    lines = [
        line.strip()
        for line in gzip.decompress(path.read_bytes()).decode("utf-8", "replace").splitlines()
        if line.strip()
    ]
    for i in range(0, len(lines), group):
        yield f"lingua/{kind}/{language}/{i // group}", "\n".join(lines[i : i + group])


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
