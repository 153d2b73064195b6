"""Low-quality text derived deterministically from public-domain prose: negatives for the quality
model whose license is the source's (public domain), with the shapes of raw web junk that
extraction lets through.

Each function takes a source text and a `random.Random` seeded from the source document's id, so
a rebuild gives the same examples and a derived example falls on its source's side of the
train/test split.
"""

from __future__ import annotations

import hashlib
import random
import re

_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")


def rng_for(doc_id: str, kind: str) -> random.Random:
    seed = hashlib.blake2b(f"{kind}\0{doc_id}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(seed, "big"))


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def keyword_list(text: str, rng: random.Random) -> str:
    """15-40 distinct longer words of the text in random order, joined as an SEO keyword line or a
    tag cloud (comma, pipe or one per line)."""
    vocab = list(dict.fromkeys(w for w in words(text) if len(w) >= 4))
    picked = rng.sample(vocab, min(len(vocab), rng.randint(15, 40)))
    if rng.random() < 0.5:
        picked = [w.title() for w in picked]
    return rng.choice((", ", " | ", "\n", " ")).join(picked)


def word_salad(text: str, rng: random.Random) -> str:
    """A run of 60-200 consecutive words of the text, shuffled: spun or scraped gibberish with the
    source's vocabulary and none of its word order."""
    tokens = words(text)
    size = min(len(tokens), rng.randint(60, 200))
    start = rng.randint(0, len(tokens) - size)
    span = tokens[start : start + size]
    rng.shuffle(span)
    return " ".join(span)


def menu_lines(text: str, rng: random.Random) -> str:
    """10-40 short lines of 1-3 consecutive title-cased words from random places in the text: the
    shape of navigation menus, category lists and footers."""
    tokens = words(text)
    lines = []
    for _ in range(rng.randint(10, 40)):
        size = rng.randint(1, 3)
        start = rng.randint(0, max(0, len(tokens) - size))
        lines.append(" ".join(w.title() for w in tokens[start : start + size]))
    return "\n".join(line for line in lines if line)


def repeated_lines(text: str, rng: random.Random) -> str:
    """One to three fragments of 3-8 consecutive words, cut mid-sentence, each repeated on 5-20
    lines: the repeated banners, buttons and template lines of scraped pages."""
    tokens = words(text)
    out = []
    for _ in range(rng.randint(1, 3)):
        size = rng.randint(3, 8)
        start = rng.randint(0, max(0, len(tokens) - size))
        out.extend([" ".join(tokens[start : start + size])] * rng.randint(5, 20))
    return "\n".join(out)


DERIVATIONS = {
    "keyword lists": keyword_list,
    "shuffled word salad": word_salad,
    "menu-like short lines": menu_lines,
    "repeated lines": repeated_lines,
}
