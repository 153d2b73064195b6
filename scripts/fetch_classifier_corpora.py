"""Fetch the registry-hosted training text of the quality and safety classifiers into
data/classifiers/, as small JSONL extracts (one document per line: id, lang, license, text).

    python scripts/fetch_classifier_corpora.py [--out data/classifiers]

Only permissively licensed packages are read, each pinned to a version; their licenses are in
data/classifiers/SOURCE.md and in the model cards. PyPI is read with `pip download` (wheels
only: a wheel's METADATA holds the package's README), npm with `npm pack`. The extracts are
committed, so `refinery classifiers build` needs no network.
"""

from __future__ import annotations

import argparse
import email.parser
import gzip
import html
import json
import re
import subprocess
import tarfile
import tempfile
import zipfile
from pathlib import Path

# (package, version, license, language of its README)
PYPI_READMES = [
    ("requests", "2.32.3", "Apache-2.0", "en"),
    ("click", "8.1.8", "BSD-3-Clause", "en"),
    ("attrs", "24.3.0", "MIT", "en"),
    ("rich", "13.9.4", "MIT", "en"),
    ("httpx", "0.28.1", "BSD-3-Clause", "en"),
    ("pydantic", "2.10.4", "MIT", "en"),
    ("numpy", "2.2.1", "BSD-3-Clause", "en"),
    ("flask", "3.1.0", "BSD-3-Clause", "en"),
    ("typer", "0.15.1", "MIT", "en"),
    ("fastapi", "0.115.6", "MIT", "en"),
    ("black", "24.10.0", "MIT", "en"),
    ("loguru", "0.7.3", "MIT", "en"),
    ("tenacity", "9.0.0", "Apache-2.0", "en"),
    ("more-itertools", "10.5.0", "MIT", "en"),
    ("marshmallow", "3.23.2", "MIT", "en"),
    ("structlog", "24.4.0", "MIT OR Apache-2.0", "en"),
    ("trafilatura", "2.0.0", "Apache-2.0", "en"),
    ("datasets", "3.2.0", "Apache-2.0", "en"),
    ("networkx", "3.4.2", "BSD-3-Clause", "en"),
    ("sqlalchemy", "2.0.36", "MIT", "en"),
    ("urllib3", "2.3.0", "MIT", "en"),
    ("pyyaml", "6.0.2", "MIT", "en"),
    ("arrow", "1.3.0", "Apache-2.0", "en"),
    ("cnlunar", "0.2.5", "MIT", "zh"),
    ("pypinyin", "0.55.0", "MIT", "zh"),
    ("akshare", "1.19.5", "MIT", "zh"),
    ("cnocr", "2.3.3", "Apache-2.0", "zh"),
    ("opencc-python-reimplemented", "0.1.7", "Apache-2.0", "zh"),
    ("tushare", "1.4.29", "BSD-3-Clause", "zh"),
    ("pytest", "9.2.0", "MIT", "en"),
    ("pandas", "3.1.1", "BSD-3-Clause", "en"),
    ("scikit-learn", "1.9.1", "BSD-3-Clause", "en"),
    ("django", "5.2.19", "BSD-3-Clause", "en"),
    ("celery", "5.7.0", "BSD-3-Clause", "en"),
    ("boto3", "1.44.8", "Apache-2.0", "en"),
    ("polars", "2.1.0", "MIT", "en"),
    ("beautifulsoup4", "4.15.0", "MIT", "en"),
    ("starlette", "1.10.0", "BSD-3-Clause", "en"),
    ("uvicorn", "0.55.0", "BSD-3-Clause", "en"),
    ("jsonschema", "4.26.0", "MIT", "en"),
    ("sympy", "1.14.0", "BSD-3-Clause", "en"),
    ("aiohttp", "3.14.5", "Apache-2.0 AND MIT", "en"),
    ("cn2an", "0.5.24", "MIT", "zh"),
    ("jionlp", "1.5.31", "Apache-2.0", "zh"),
]
# (package, version, license, file inside the package, language)
NPM_READMES = [
    ("vxe-table", "4.21.3", "MIT", "package/README.md", "zh"),
    ("pinyin-pro", "3.29.4", "MIT", "package/README.md", "zh"),
    ("nzh", "1.0.14", "BSD-2-Clause", "package/README.md", "zh"),
    ("lunar-javascript", "1.7.7", "MIT", "package/README.md", "zh"),
    ("china-division", "2.7.0", "MIT", "package/README.md", "zh"),
]
SPHINX = ("sphinx", "9.0.4", "BSD-2-Clause")
SPDX = ("spdx-license-list", "6.12.0", "CC0-1.0")
# A long README is mostly its changelog, where one is not headed as such.
MAX_README_CHARS = 12_000
# The long copyleft texts (GPL, MPL, EUPL, ...) would outweigh the rest of the legal text.
MAX_LICENSE_CHARS = 12_000

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")  # a badge: nothing, as a page's text extraction gives
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_TAG = re.compile(r"<[^>]+>")
_RST_ROLE = re.compile(r":[\w:-]+:`([^`<]*)(?:<[^>]*>)?`")
_RST_REFERENCE = re.compile(r"`([^`<]+?)\s*(?:<[^>]*>)?`__?")  # `Celery`_, `docs <https://...>`_
_CJK = re.compile(r"[\u3400-\u9fff]")
_LIST_ITEM = re.compile(r"([-*+]|\d+[.)])\s")
# A README's release history, from its Markdown or reStructuredText heading on: lists of merged
# changes and contributors, not prose.
_CHANGELOG = re.compile(
    r"^(?:#{1,6}[ \t]*)?(?:change ?log|changes|release notes|release history|history|what's changed|更新日志)"
    r"[ \t]*(?:\n[=\-~^*#]{3,}[ \t]*)?$(?=\n|\Z)",
    re.M | re.I,
)


def readable_text(markup: str) -> str:
    """The prose of a Markdown or reStructuredText README: code blocks, tables, badges, HTML
    tags, directives, heading underlines and the changelog removed, links and inline markup reduced
    to their text; a list item keeps its own line, as a page's text extraction gives it."""
    markup = markup.replace("\r\n", "\n")
    if changelog := _CHANGELOG.search(markup):
        markup = markup[: changelog.start()]
    # Images first (a badge inside a link leaves an empty link), on the whole text: a link's target
    # may be on the next line.
    text = _LINK.sub(r"\1", _IMAGE.sub("", _FENCE.sub("", markup)))
    kept: list[str] = []
    in_literal = False
    for line in text.split("\n"):
        stripped = line.strip()
        if in_literal and (not stripped or line[:1] in " \t"):
            continue
        in_literal = False
        if line[:1] in " \t" and stripped and not stripped.startswith(("-", "*", "+")):
            continue  # indented code
        if stripped.startswith(("|", "+-", "..", "<!--", ">>>", "$ ")) or re.fullmatch(r"[=\-~^*#`:_+]{3,}", stripped):
            continue
        if stripped.endswith("::"):
            in_literal = True
            stripped = stripped[:-1]
        stripped = _RST_REFERENCE.sub(r"\1", _RST_ROLE.sub(r"\1", _TAG.sub("", stripped)))
        stripped = stripped.lstrip("#").strip().replace("**", "").replace("``", "").replace("`", "")
        kept.append(stripped)
    paragraphs = [_unwrapped(p) for p in "\n".join(kept).split("\n\n")]
    return "\n\n".join(p for p in paragraphs if len(p.split()) >= 6 or len(_CJK.findall(p)) >= 15)


def _unwrapped(paragraph: str) -> str:
    """A paragraph's wrapped lines joined; a list item starts a line of its own."""
    lines: list[str] = []
    for line in paragraph.split("\n"):
        if lines and not _LIST_ITEM.match(line):
            lines[-1] += " " + line
        elif line:
            lines.append(line)
    return "\n".join(line.strip() for line in lines)


def cjk_paragraphs(text: str) -> str:
    """Paragraphs that are mostly Chinese (a bilingual README's Chinese half)."""
    keep = [p for p in text.split("\n\n") if len(_CJK.findall(p)) >= 0.3 * len(re.sub(r"\s", "", p))]
    return "\n\n".join(keep)


def pip_wheel(name: str, version: str, folder: Path) -> Path:
    subprocess.run(
        ["pip", "download", "--no-deps", "--only-binary", ":all:", f"{name}=={version}", "-d", str(folder)],
        check=True,
        capture_output=True,
    )
    stem = name.replace("-", "_").lower()
    return next(p for p in folder.glob("*.whl") if p.name.lower().startswith(stem + "-"))


def npm_tarball(name: str, version: str, folder: Path) -> Path:
    out = subprocess.run(
        ["npm", "pack", f"{name}@{version}"], cwd=folder, check=True, capture_output=True, text=True
    ).stdout
    return folder / out.strip().splitlines()[-1]


def wheel_readme(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        message = email.parser.BytesParser().parsebytes(z.read(name))
    body = message.get_payload(decode=True) or b""
    return body.decode("utf-8", "replace")


def parse_po(text: str) -> list[tuple[list[str], str, str]]:
    """(source references, msgid, msgstr) of every entry of a gettext catalog."""
    entries = []
    refs: list[str] = []
    fields = {"msgid": "", "msgstr": ""}
    current = None
    for line in text.splitlines() + [""]:
        if line.startswith("#:"):
            refs.extend(line[2:].split())
        elif line.startswith(("msgid ", "msgstr ")):
            current, _, value = line.partition(" ")
            fields[current] = json.loads(value)
        elif line.startswith('"') and current:
            fields[current] += json.loads(line)
        elif not line.strip():
            if fields["msgid"]:
                entries.append((refs, fields["msgid"], fields["msgstr"]))
            refs, fields, current = [], {"msgid": "", "msgstr": ""}, None
    return entries


# What a built page puts in a theme string's placeholders.
_FILLERS = {
    "docstitle": "the documentation",
    "last_updated": "Jan 01, 2025",
    "copyright": "2025, the authors",
    "copyright_prefix": "Copyright",
    "version": "1.0",
    "sphinx_version": SPHINX[1],
}
_FORMAT = re.compile(r"%(?:\(\w+\))?[srd]")


def _fill(message: str) -> str:
    """The string as a page shows it: placeholders filled, HTML reduced to its text."""
    for key, value in _FILLERS.items():
        message = message.replace(f"%({key})s", value)
    return html.unescape(_TAG.sub("", message))


def sphinx_chrome(wheel: Path) -> list[dict]:
    """Per language, the interface strings of Sphinx's HTML themes (search box, previous/next,
    'Show Source', copyright and 'Created using' footers): the chrome of documentation sites."""
    docs = []
    english: list[str] = []
    with zipfile.ZipFile(wheel) as z:
        for name in sorted(z.namelist()):
            match = re.fullmatch(r"sphinx/locale/([^/]+)/LC_MESSAGES/sphinx\.po", name)
            if not match:
                continue
            lines = []
            for refs, msgid, msgstr in parse_po(z.read(name).decode("utf-8", "replace")):
                if any(r.startswith("themes/") for r in refs) and not _FORMAT.search(_fill(msgid)):
                    english.append(_fill(msgid))
                    if msgstr:
                        lines.append(_fill(msgstr))
            if lines:
                lang = match.group(1)
                docs.append(
                    {"id": f"sphinx-chrome/{lang}", "lang": lang.split("_")[0].split("@")[0], "text": "\n".join(lines)}
                )
    docs.append({"id": "sphinx-chrome/en", "lang": "en", "text": "\n".join(dict.fromkeys(english))})
    return docs


def spdx_texts(tarball: Path) -> list[dict]:
    """Full texts of the OSI-approved licenses in SPDX's license list, up to MAX_LICENSE_CHARS each."""
    docs = []
    with tarfile.open(tarball) as t:
        for member in sorted(t.getmembers(), key=lambda m: m.name):
            if member.name.startswith("package/licenses/") and member.name.endswith(".json"):
                entry = json.load(t.extractfile(member))
                text = entry.get("licenseText") or ""
                if entry.get("osiApproved") and 0 < len(text) <= MAX_LICENSE_CHARS:
                    docs.append({"id": f"spdx/{Path(member.name).stem}", "lang": "en", "text": text})
    return docs


def write_jsonl(path: Path, docs: list[dict]) -> None:
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=9) as f:
        for doc in docs:
            f.write(json.dumps(doc, ensure_ascii=False) + "\n")
    print(f"{path}: {len(docs)} documents, {sum(len(d['text']) for d in docs)} characters")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="data/classifiers")
    out = Path(parser.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        readmes = []
        for name, version, license, lang in PYPI_READMES:
            text = readable_text(wheel_readme(pip_wheel(name, version, folder)))
            readmes.append({"id": f"pypi/{name}", "lang": lang, "license": license, "text": text[:MAX_README_CHARS]})
        for name, version, license, member, lang in NPM_READMES:
            with tarfile.open(npm_tarball(name, version, folder)) as t:
                text = readable_text(t.extractfile(member).read().decode("utf-8", "replace"))
            readmes.append({"id": f"npm/{name}", "lang": lang, "license": license, "text": text})
        for doc in readmes:
            if doc["lang"] == "zh":
                doc["text"] = cjk_paragraphs(doc["text"])
        write_jsonl(out / "package_readmes.jsonl.gz", [d for d in readmes if d["text"]])
        chrome = sphinx_chrome(pip_wheel(SPHINX[0], SPHINX[1], folder))
        write_jsonl(out / "sphinx_theme_strings.jsonl.gz", [{**d, "license": SPHINX[2]} for d in chrome])
        licenses = spdx_texts(npm_tarball(SPDX[0], SPDX[1], folder))
        write_jsonl(out / "spdx_license_texts.jsonl.gz", [{**d, "license": SPDX[2]} for d in licenses])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
