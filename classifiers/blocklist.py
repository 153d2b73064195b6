"""Domain and word blocklists (InternLM2 §3.1.4: a domain blocklist and a word blocklist remove
unsafe pages before the classifiers).

Domains: a folder in the UT1 format (one folder per category, each with a `domains` file of one
domain per line); a URL matches when its host or any parent domain is listed, so listing
`example.com` blocks `www.example.com` and `a.b.example.com`, as UT1 and squidGuard intend.
Words: one file per language, one entry per line. Space-separated languages match whole words
(and multi-word phrases) case-insensitively; Chinese, Japanese and Thai, written without spaces,
match substrings. A document's hit rate is hits per word (per character for the unspaced scripts);
how many different listed words it holds is counted too, since one listed word, even often, is
how clean prose uses them ("intercourse" in a speech, "rape" in a court report, 性 in 性能).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

UNSPACED_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "km", "my"})


def url_host(url: str | None) -> str | None:
    """Lowercased host of a URL without port or trailing dot; None when there is none."""
    if not url:
        return None
    try:
        host = urlsplit(url if "://" in url else f"//{url}").hostname
    except ValueError:
        return None
    return host.rstrip(".") if host else None


class DomainBlocklist:
    def __init__(self, root: str | Path, categories: list[str] | None = None):
        self.root = Path(root)
        available = sorted(p.name for p in self.root.iterdir() if (p / "domains").is_file())
        unknown = sorted(set(categories or []) - set(available))
        if unknown:
            raise ValueError(f"{self.root}: no category {', '.join(unknown)} (have: {', '.join(available)})")
        self.categories = list(categories) if categories else available
        self.domains: dict[str, str] = {}
        for category in self.categories:
            for line in (self.root / category / "domains").read_text(encoding="utf-8", errors="replace").splitlines():
                domain = line.strip().lower().rstrip(".")
                if domain and not domain.startswith("#"):
                    self.domains.setdefault(domain, category)

    def __len__(self) -> int:
        return len(self.domains)

    def category(self, url: str | None) -> str | None:
        """The category of the most specific listed domain covering the URL's host, or None."""
        host = url_host(url)
        if host is None:
            return None
        labels = host.split(".")
        for i in range(len(labels)):
            found = self.domains.get(".".join(labels[i:]))
            if found is not None:
                return found
        return None


def trie_pattern(words: list[str]) -> str:
    """An alternation of `words` as a prefix tree: the regex engine then tries each prefix once
    instead of every word at every position. Longer words win over their prefixes."""
    trie: dict[str, dict] = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def emit(node: dict[str, dict]) -> str:
        optional = "" in node
        branches = [re.escape(ch) + emit(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if optional:
            body = f"(?:{body})?" if len(branches) > 1 or len(branches[0]) > 1 else body + "?"
        return body

    return emit(trie)


@dataclass(frozen=True)
class Hits:
    count: int  # listed words found, each occurrence
    distinct: int  # different listed words among them
    rate: float  # hits per word (hit characters per character for the unspaced scripts)


NO_HITS = Hits(0, 0, 0.0)


class WordBlocklist:
    """Per-language word lists from a folder of `<lang>.txt` files (e.g. the LDNOOBW lists), each
    compiled on first use: C4's bad-word rule asks whether a page has a listed word (`found`), the
    classify stage how many, how many different and how densely (`hits`)."""

    def __init__(self, root: str | Path, languages: list[str] | None = None):
        self.root = Path(root)
        files = {p.stem: p for p in sorted(self.root.glob("*.txt"))}
        unknown = sorted(set(languages or []) - set(files))
        if unknown:
            raise ValueError(f"{self.root}: no word list for {', '.join(unknown)}")
        self._files = {lang: files[lang] for lang in languages or files}
        self._patterns: dict[str, re.Pattern[str] | None] = {}

    def pattern(self, lang: str) -> re.Pattern[str] | None:
        """The language's list as one expression (None without a list, or an empty one)."""
        if lang not in self._patterns:
            path = self._files.get(lang)
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines() if path else []
            words = sorted({w.strip().lower() for w in lines if w.strip()})
            alternation = trie_pattern(words)
            if not words:
                self._patterns[lang] = None
            elif lang in UNSPACED_LANGUAGES:
                self._patterns[lang] = re.compile(alternation)
            else:
                self._patterns[lang] = re.compile(rf"(?<!\w)(?:{alternation})(?!\w)")
        return self._patterns[lang]

    def found(self, text: str, lang: str) -> bool:
        """Whether the text holds a word of the language's list."""
        pattern = self.pattern(lang)
        return pattern is not None and pattern.search(text.lower()) is not None

    def hits(self, text: str, lang: str) -> Hits:
        """The language's listed words in the text; NO_HITS without a list."""
        pattern = self.pattern(lang)
        if pattern is None or not text:
            return NO_HITS
        found = pattern.findall(text.lower())
        if lang in UNSPACED_LANGUAGES:
            rate = sum(map(len, found)) / len(text)
        else:
            rate = len(found) / max(1, len(text.split()))
        return Hits(len(found), len(set(found)), rate)
