"""Readers for the real text bundled in the shared data folder, used to build the shipped models.

Each reader yields `(doc_id, text)`; documents are the unit of the train/test split so that no
document contributes to both sides. Licenses are in each folder's SOURCE.md and are recorded in
the model cards.
"""

from __future__ import annotations

import csv
import functools
import gzip
import json
import re
import zipfile
from html import unescape
from pathlib import Path
from typing import Iterator

_PARAGRAPH = re.compile(r"\n\s*\n")


def nltk_plaintext(root: Path, corpus: str) -> Iterator[tuple[str, str]]:
    """One document per file of an nltk plain-text corpus zip (inaugural, state_union, genesis)."""
    with zipfile.ZipFile(root / "nltk_corpora" / f"{corpus}.zip") as z:
        for name in sorted(z.namelist()):
            if name.endswith(".txt"):
                yield f"{corpus}/{Path(name).stem}", z.read(name).decode("utf-8", "replace").replace("\r\n", "\n")


GENESIS_TRANSLATIONS = {
    "english-kjv": "en",
    "english-web": "en",
    "finnish": "fi",
    "french": "fr",
    "german": "de",
    "portuguese": "pt",
    "swedish": "sv",
}
# The files that are not UTF-8, as nltk's genesis reader decodes them. The German one also writes
# its ß as "&szlig;" and its chapters in HTML (`</P><hr><h3>2. Kapitel</h3>`), and the Swedish one
# its quotation marks (”, both sides) as byte 0xBD and letter-spaced names as `<spärr>Eva</spärr>`.
GENESIS_ENCODINGS = {"finnish": "latin-1", "french": "latin-1", "german": "latin-1", "swedish": "cp865"}
_SWEDISH_QUOTE = "\u255c"  # 0xBD in cp865
_BLOCK_TAG = re.compile(r"</?(?:p|hr|h\d)>", re.I)  # a line break
_INLINE_TAG = re.compile(r"</?spärr>")  # nothing


def genesis_lines(root: Path, name: str) -> list[str]:
    """One translation's lines as written: decoded, entities and markup resolved, blank lines dropped."""
    with zipfile.ZipFile(root / "nltk_corpora" / "genesis.zip") as z:
        raw = z.read(f"genesis/{name}.txt").decode(GENESIS_ENCODINGS.get(name, "utf-8"), "replace")
    text = _INLINE_TAG.sub("", _BLOCK_TAG.sub("\n", unescape(raw).replace(_SWEDISH_QUOTE, "\u201d")))
    return [line.strip() for line in text.splitlines() if line.strip()]


def genesis(root: Path, translations: list[str], parts: int = 10) -> Iterator[tuple[str, str]]:
    """Public-domain translations of Genesis (nltk genesis.zip), each cut into `parts`
    consecutive runs of lines. Part k of every translation shares the id `genesis/k`, so
    parallel text never lands on both sides of the train/test split."""
    for name in translations:
        lines = genesis_lines(root, name)
        step = -(-len(lines) // parts)
        for k in range(parts):
            # Verses are wrapped lines with no blank lines between them: one paragraph per line.
            yield f"genesis/{k}", "\n\n".join(lines[k * step : (k + 1) * step])


def udhr(root: Path, code: str) -> Iterator[tuple[str, str]]:
    """The Universal Declaration of Human Rights in one language (public domain; `code` is the
    udhr2 file name, e.g. `eng`, `cmn_hans`), one document per run of about 1000 characters of
    articles. Article k of every translation falls in run k or near it; runs are split by
    their own id, so translations of one article may fall on both sides."""
    with zipfile.ZipFile(root / "nltk_corpora" / "udhr2.zip") as z:
        text = z.read(f"udhr2/{code}.txt").decode("utf-8", "replace")
    for i, chunk in enumerate(chunks(text.replace("\n", "\n\n"), 1000)):
        yield f"udhr/{code}/{i}", chunk


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


def trafilatura_main_texts(root: Path, min_chars: int = 500) -> Iterator[tuple[str, str]]:
    """Main text of the trafilatura evaluation pages (news, blogs, government and company
    pages), extracted by trafilatura and kept only when it holds every snippet the annotators
    marked as main text and none they marked as boilerplate."""
    import trafilatura

    folder = root / "trafilatura_eval" / "html"
    for url, entry in _trafilatura_pages(root):
        path = folder / f"{entry['file']}.gz"
        if not path.is_file():
            continue
        html = gzip.decompress(path.read_bytes()).decode("utf-8", "replace")
        text = trafilatura.extract(html, favor_precision=True) or ""
        wanted, unwanted = entry.get("with") or [], entry.get("without") or []
        if len(text) >= min_chars and all(s in text for s in wanted) and not any(s in text for s in unwanted):
            yield f"trafilatura/{url}", text


def article_page_links(root: Path) -> Iterator[tuple[str, str]]:
    """Per page of the extraction benchmark, the text of every link, one per line: the related
    stories, tag clouds, section lists and share buttons of a news page (a link list)."""
    import lxml.html

    for path in sorted((root / "article_extraction_benchmark" / "html").glob("*.html.gz")):
        try:
            page = lxml.html.fromstring(gzip.decompress(path.read_bytes()))
        except (ValueError, lxml.etree.ParserError):
            continue
        links = [" ".join(a.text_content().split()) for a in page.iter("a")]
        links = [text for text in links if text]
        if links:
            yield f"articles/{path.name.split('.')[0]}", "\n".join(links)


def extract_documents(folder: Path, name: str) -> Iterator[tuple[str, str, str]]:
    """(doc_id, lang, text) of a JSONL extract written by scripts/fetch_classifier_corpora.py."""
    with gzip.open(folder / f"{name}.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            yield doc["id"], doc["lang"], doc["text"]


def python_doc_topics() -> Iterator[tuple[str, str]]:
    """The Python language reference and library topics shipped with the interpreter
    (`pydoc_data.topics`, PSF License): the text `help()` shows."""
    from pydoc_data.topics import topics

    for key in sorted(topics):
        yield f"pydoc/{key}", topics[key]


def python_source_code() -> Iterator[tuple[str, str]]:
    """The code of the standard library's top-level modules (PSF License), one document per module,
    without its docstrings and comments (`ast.unparse`): code, not the prose the documentation
    domain holds."""
    import ast
    import sysconfig

    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
                if isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                    node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]
        # Blank lines between top-level statements, so that chunks end where a definition does.
        yield f"python/{path.stem}", "\n\n".join(ast.unparse(statement) for statement in tree.body)


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


@functools.cache
def _language_model():
    from refinery.classifiers.fasttext_model import load_fasttext
    from refinery.pipeline.resources import resolve_path

    return load_fasttext(resolve_path("models/lid.176.ftz"))


def language_of(text: str) -> str:
    """The lid.176 language code of a text, for sources that mix languages (web pages)."""
    labels, _ = _language_model().predict(" ".join(text[:2000].split()))
    return labels[0].removeprefix("__label__")


def chunks(text: str, target_chars: int, by_lines: bool = False) -> list[str]:
    """Consecutive paragraphs (or lines) joined until about `target_chars` each. A remainder under
    half the target joins the chunk before it: a document's last credit line or disclaimer is not a
    document of its own."""
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
    if current and out and size < target_chars / 2:
        out[-1] += "\n" + "\n".join(current)
    elif current:
        out.append("\n".join(current))
    return out
