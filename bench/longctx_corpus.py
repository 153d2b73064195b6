"""Builds the long-context evaluation set `bench/data/longctx/chapters.jsonl.xz` from git mirrors
of its sources (bench/data/longctx/SOURCE.md gives each one's origin and license).

A record is one whole chapter of at least 32 KB (UTF-8) with its language, source and paragraphs:
- Python documentation chapters (one .po file each): the translated messages in order (en: the
  original messages of the French repository), for files at least 80% translated;
- the German Book of Genesis (nltk_data, public domain) cut into runs of consecutive verses;
- the German Vue.js guide (not its API reference, whose entries repeat one template): consecutive
  pages of one section, each page whole, without its code blocks and HTML tag lines (the guide's
  prose).
Paragraphs are kept so that the benchmark can build same-source splices. Each record is assigned
to `tune` or `test` by its chapter (the same chapter in every language lands on the same side).

    python bench/longctx_corpus.py --python-docs fr=MIRROR@3.13 --python-docs zh=MIRROR@3.13 \\
        --python-docs ja=MIRROR@3.11 --python-docs es=MIRROR@3.12 --vue-de MIRROR --data ../shared/data
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import lzma
import re
import subprocess
import zipfile
from pathlib import Path

MIN_BYTES = 32 * 1024
MIN_TRANSLATED = 0.8
PER_LANGUAGE = 24  # chapters kept per language, the shortest first (keeps the file small)
OUT = Path(__file__).parent / "data" / "longctx" / "chapters.jsonl.xz"


def git_files(repo: str, ref: str, suffix: str) -> list[str]:
    out = subprocess.run(["git", "-C", repo, "ls-tree", "-r", "--name-only", ref], capture_output=True, text=True)
    return sorted(p for p in out.stdout.split() if p.endswith(suffix))


def git_show(repo: str, ref: str, path: str) -> str:
    return subprocess.run(["git", "-C", repo, "show", f"{ref}:{path}"], capture_output=True, text=True).stdout


def po_messages(text: str) -> list[tuple[str, str]]:
    """(msgid, msgstr) of a .po file in order; fuzzy and obsolete entries have an empty msgstr."""
    messages: list[tuple[str, str]] = []
    entry: dict[str, str] = {}
    field, fuzzy = None, False

    def flush() -> None:
        nonlocal entry, fuzzy
        if entry.get("msgid"):
            messages.append((entry["msgid"], "" if fuzzy else entry.get("msgstr", "")))
        entry, fuzzy = {}, False

    for line in text.splitlines() + [""]:
        if line.startswith("#~"):
            continue
        if not line.strip():
            flush()
            field = None
        elif line.startswith("#,"):
            fuzzy = "fuzzy" in line
        elif line.startswith(("msgid ", "msgstr ")):
            field, _, literal = line.partition(" ")
            entry[field] = _literal(literal)
        elif line.startswith('"') and field:
            entry[field] += _literal(line)
    return messages


def _literal(s: str) -> str:
    try:
        return ast.literal_eval(s.strip())
    except (SyntaxError, ValueError):
        return ""


def python_docs(lang: str, repo: str, ref: str) -> list[dict]:
    records = []
    for path in git_files(repo, ref, ".po"):
        messages = po_messages(git_show(repo, ref, path))
        total = sum(len(i) for i, _ in messages)
        if lang == "en":
            paragraphs = [i for i, _ in messages]
        else:
            paragraphs = [s for _, s in messages if s]
            if sum(len(i) for i, s in messages if s) < MIN_TRANSLATED * max(1, total):
                continue
        records.append(_record(lang, "python-docs", path.removesuffix(".po"), paragraphs))
    return records


def genesis_german(data: Path) -> list[dict]:
    with zipfile.ZipFile(data / "nltk_corpora" / "genesis.zip") as z:
        verses = [v.strip() for v in z.read("genesis/german.txt").decode("latin-1").splitlines() if v.strip()]
    return _runs("de", "genesis", "genesis-german", verses)


def vue_guide(lang: str, repo: str) -> list[dict]:
    records = []
    pages = [p for p in git_files(repo, "HEAD", ".md") if p.startswith("src/guide/")]
    for section in sorted({p.rsplit("/", 1)[0] for p in pages}):
        texts = [prose(git_show(repo, "HEAD", p)) for p in pages if p.rsplit("/", 1)[0] == section]
        records += _runs(lang, "vue-docs", section.removeprefix("src/"), texts, unit="page")
    return records


def prose(markdown: str) -> str:
    """A Vue guide page without its fenced code blocks and lines of HTML tags (its prose and headings)."""
    text = re.sub(r"^```.*?^```[^\n]*$", "", markdown, flags=re.S | re.M)
    text = re.sub(r"^\s*</?[A-Za-z][^\n]*>\s*$", "", text, flags=re.M)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _runs(lang: str, source: str, name: str, units: list[str], unit: str = "verse") -> list[dict]:
    """Consecutive units joined into chapters of at least MIN_BYTES (a short tail is dropped)."""
    records, run, size = [], [], 0
    for text in units:
        run.append(text)
        size += len(text.encode()) + 2
        if size >= MIN_BYTES:
            paragraphs = [p for t in run for p in re.split(r"\n\s*\n", t)] if unit == "page" else run
            records.append(_record(lang, source, f"{name}#{len(records)}", paragraphs))
            run, size = [], 0
    return records


def _record(lang: str, source: str, chapter: str, paragraphs: list[str]) -> dict:
    paragraphs = [p.strip() for p in paragraphs if p.strip()]
    digest = hashlib.sha1(f"{source}/{chapter}".encode()).digest()[0]
    return {
        "lang": lang,
        "source": source,
        "chapter": chapter,
        "split": "test" if digest % 2 else "tune",
        "paragraphs": paragraphs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python-docs", action="append", default=[], help="LANG=GIT_DIR@REF (fr also gives en)")
    parser.add_argument("--vue-de", help="git dir of vuejs-translations/docs-de")
    parser.add_argument("--data", default="../shared/data")
    args = parser.parse_args(argv)
    records = []
    for spec in args.python_docs:
        lang, _, where = spec.partition("=")
        repo, _, ref = where.partition("@")
        records += python_docs(lang, repo, ref)
        if lang == "fr":
            records += python_docs("en", repo, ref)
    records += genesis_german(Path(args.data))
    if args.vue_de:
        records += vue_guide("de", args.vue_de)
    kept = []
    for lang in sorted({r["lang"] for r in records}):
        long = [r for r in records if r["lang"] == lang and len("\n\n".join(r["paragraphs"]).encode()) >= MIN_BYTES]
        long.sort(key=lambda r: len("\n\n".join(r["paragraphs"]).encode()))
        kept += long[:PER_LANGUAGE]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with lzma.open(OUT, "wt", encoding="utf-8") as f:
        for r in kept:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    for lang in sorted({r["lang"] for r in kept}):
        mine = [r for r in kept if r["lang"] == lang]
        print(
            lang,
            {s: sum(r["split"] == s for r in mine) for s in ("tune", "test")},
            {src: sum(r["source"] == src for r in mine) for src in sorted({r["source"] for r in mine})},
        )
    print(f"{len(kept)} chapters -> {OUT} ({OUT.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
