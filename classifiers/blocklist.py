"""Domain and word blocklists (InternLM2 §3.1.4: a domain blocklist and a word blocklist remove
unsafe pages before the classifiers).

Domains: a folder in the UT1 format (one folder per category, each with a `domains` file of one
domain per line); a URL matches when its host or any parent domain is listed, so listing
`example.com` blocks `www.example.com` and `a.b.example.com`, as UT1 and squidGuard intend.
Words: one file per language, one entry per line. Space-separated languages match whole words
(and multi-word phrases) case-insensitively; Chinese, Japanese and Thai, written without spaces,
match substrings. A document's hit rate is hits per word (per character for the unspaced scripts).
"""

from __future__ import annotations

import re
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


class WordBlocklist:
    """Per-language word lists from a folder of `<lang>.txt` files (e.g. the LDNOOBW lists)."""

    def __init__(self, root: str | Path, languages: list[str] | None = None):
        self.root = Path(root)
        files = {p.stem: p for p in sorted(self.root.glob("*.txt"))}
        unknown = sorted(set(languages or []) - set(files))
        if unknown:
            raise ValueError(f"{self.root}: no word list for {', '.join(unknown)}")
        self._patterns: dict[str, re.Pattern] = {}
        for lang in languages or sorted(files):
            words = sorted(
                {
                    w.strip().lower()
                    for w in files[lang].read_text(encoding="utf-8", errors="replace").splitlines()
                    if w.strip()
                },
                key=len,
                reverse=True,
            )
            if not words:
                continue
            alternatives = "|".join(re.escape(w) for w in words)
            if lang in UNSPACED_LANGUAGES:
                self._patterns[lang] = re.compile(alternatives)
            else:
                self._patterns[lang] = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")

    @property
    def languages(self) -> list[str]:
        return sorted(self._patterns)

    def hits(self, text: str, lang: str) -> tuple[int, float]:
        """(number of hits, hit rate) of the language's list in the text; (0, 0.0) without a list."""
        pattern = self._patterns.get(lang)
        if pattern is None or not text:
            return 0, 0.0
        found = pattern.findall(text.lower())
        if lang in UNSPACED_LANGUAGES:
            units = len(text)
            return len(found), sum(map(len, found)) / units
        units = max(1, len(text.split()))
        return len(found), len(found) / units
