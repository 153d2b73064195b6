"""The normalize and rules stages as they were written first, one document at a time in Python:
the references the batch versions (Arrow kernels for normalize, numba kernels in
`refinery.stages.rules` for the rules) must equal exactly (tests/test_text_reference.py).

Words come from one `regex` pattern (spaCy-like English tokens, Han and kana one per character),
lines from `str.splitlines`, duplicates from Python sets.
"""

from __future__ import annotations

import heapq
import re
import unicodedata
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import regex

from refinery.classifiers.blocklist import UNSPACED_LANGUAGES

_ALL_CHARS = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000)
# Unicode Sentence_Terminal: the characters that end a sentence in any script.
TERMINAL_PUNCTUATION = frozenset(regex.findall(r"\p{Sentence_Terminal}", _ALL_CHARS))
del _ALL_CHARS

_CJK = r"\p{Han}\p{Hiragana}\p{Katakana}"
_CONTRACTION = r"(?i:s|t|re|ll|ve|d|m)\b"
# Common abbreviations that keep their period (a tokenizer's exception list, abridged).
_ABBREVIATIONS = (
    "Mr|Mrs|Ms|Dr|St|Jr|Sr|Mt|Prof|Gen|Gov|Sen|Rep|Rev|Inc|Ltd|Co|Corp|vs|etc|"
    "Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec"
)
_TAIL = r"""
| (?:https?://|www\.)\S+?(?=[.,;:!?)\]}}"'»”’]*(?:\s|\Z))
| [\w.+-]+@[\w-]+(?:\.[\w-]+)+
| (?:\p{{L}}\.)+(?=[\s,;:!?)"'»”’]|\Z)
| \b(?:{abbr})\.
| \b(?:[iI](?=m\b)|[cC]an(?=not\b)|gon(?=na\b)|got(?=ta\b)|wan(?=na\b))
| ['’]{contraction}
| {w}+(?:(?:\.|['’](?!{contraction})|[-–—/+,:](?=\p{{N}})|(?<=\p{{N}})[-–—/+,:])(?={w}){w}+)*(?:[-/](?=\s|\Z))?
| \.{{2,}}
| -{{2,}}
| [^\s]
"""
_WORD_CHARS = r"[\p{L}\p{M}\p{N}_]"
_WORD_CHARS_NO_CJK = r"[[\p{L}\p{M}\p{N}_]--[" + _CJK + "]]"
TOKEN = regex.compile(
    r"(?!)" + _TAIL.format(w=_WORD_CHARS, abbr=_ABBREVIATIONS, contraction=_CONTRACTION), regex.VERBOSE | regex.V1
)
TOKEN_CJK = regex.compile(
    r"[" + _CJK + "]" + _TAIL.format(w=_WORD_CHARS_NO_CJK, abbr=_ABBREVIATIONS, contraction=_CONTRACTION),
    regex.VERBOSE | regex.V1,
)
CJK_CHAR = regex.compile(r"[" + _CJK + "]")
LETTER = regex.compile(r"\p{L}")
# A token is a "symbol" when it has no letter, mark or digit (datatrove: all chars punctuation).
HAS_WORD_CHAR = regex.compile(r"[\p{L}\p{M}\p{N}]")
CJK_LANGS = frozenset({"zh", "ja", "wuu", "yue", "gan"})
# Share of Han/kana among letters above which a document without a language is treated as CJK.
CJK_SCRIPT_SHARE = 0.3


def is_cjk(text: str, lang: str | None) -> bool:
    """Whether words are characters: by the language when known, else by the script."""
    if lang:
        return lang in CJK_LANGS
    letters = len(LETTER.findall(text, endpos=20_000))
    return letters > 0 and len(CJK_CHAR.findall(text, endpos=20_000)) >= CJK_SCRIPT_SHARE * letters


def split_words(text: str, cjk: bool = False) -> list[str]:
    """Words and punctuation tokens of `text` (Han and kana one per character when `cjk`)."""
    return (TOKEN_CJK if cjk else TOKEN).findall(text)


def normalize(text: str, form: str = "NFC", max_blank_lines: int = 1) -> str:
    text = unicodedata.normalize(form, text.replace("\r\n", "\n").replace("\r", "\n"))
    text = re.sub(r"[ \t\u00a0]+\n", "\n", text)
    return re.sub(r"\n{%d,}" % (max_blank_lines + 2), "\n" * (max_blank_lines + 1), text).strip()


@dataclass
class Doc:
    """One document and the splits every family shares, computed on first use."""

    text: str
    cjk: bool
    lang: str | None

    @cached_property
    def words(self) -> list[str]:
        return split_words(self.text, self.cjk)

    @cached_property
    def lines(self) -> list[str]:
        return self.text.splitlines()

    @cached_property
    def word_hashes(self) -> tuple[np.ndarray, np.ndarray]:
        """Each word as a 64-bit hash (n-gram keys) and the prefix sums of word lengths."""
        words = self.words
        hashes = np.fromiter(map(hash, words), dtype=np.int64, count=len(words)).view(np.uint64)
        offsets = np.zeros(len(words) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, words), dtype=np.int64, count=len(words)), out=offsets[1:])
        return hashes, offsets


def find_duplicates(items: list[str]) -> tuple[int, int]:
    """(elements, characters) that repeat an earlier element."""
    seen: set[str] = set()
    dup = dup_chars = 0
    for item in items:
        if item in seen:
            dup += 1
            dup_chars += len(item)
        else:
            seen.add(item)
    return dup, dup_chars


# ------------------------------------------------------------------ Gopher (Rae et al. 2021, A1)


def gopher_quality(p, doc: Doc) -> list[str]:
    words = doc.words
    n = len(words)
    content = [w for w in words if HAS_WORD_CHAR.search(w)]
    failed = []
    if p.min_doc_words is not None and len(content) < p.min_doc_words:
        failed.append("gopher_too_few_words")
    if p.max_doc_words is not None and len(content) > p.max_doc_words:
        failed.append("gopher_too_many_words")
    if content and not doc.cjk:
        mean = sum(map(len, content)) / len(content)
        if p.min_avg_word_length is not None and mean < p.min_avg_word_length:
            failed.append("gopher_short_words")
        if p.max_avg_word_length is not None and mean > p.max_avg_word_length:
            failed.append("gopher_long_words")
    text = doc.text
    if n and p.max_symbol_word_ratio is not None:
        if text.count("#") / n > p.max_symbol_word_ratio:
            failed.append("gopher_hash_ratio")
        if (text.count("...") + text.count("…")) / n > p.max_symbol_word_ratio:
            failed.append("gopher_ellipsis_ratio")
    lines = doc.lines
    if lines:
        if p.max_bullet_lines_ratio is not None:
            bullets = sum(line.lstrip().startswith(("•", "-")) for line in lines)
            if bullets / len(lines) > p.max_bullet_lines_ratio:
                failed.append("gopher_bullet_lines")
        if p.max_ellipsis_lines_ratio is not None:
            ellipsis = sum(line.rstrip().endswith(("...", "…")) for line in lines)
            if ellipsis / len(lines) > p.max_ellipsis_lines_ratio:
                failed.append("gopher_ellipsis_lines")
    if n and p.min_alpha_words_ratio is not None:
        alpha = sum(1 for w in words if any(c.isalpha() for c in w))
        if alpha / n < p.min_alpha_words_ratio:
            failed.append("gopher_alpha_words")
    if p.min_stop_words is not None and (doc.lang is None or doc.lang in p.stop_words_languages):
        if len(set(p.stop_words).intersection(words)) < p.min_stop_words:
            failed.append("gopher_stop_words")
    return failed


_MIX = np.uint64(0x9E3779B97F4A7C15)


def ngram_keys(hashes: np.ndarray, n: int) -> np.ndarray:
    """One 64-bit key per n-gram of word hashes (order-sensitive)."""
    m = len(hashes) - n + 1
    keys = hashes[:m].copy()
    with np.errstate(over="ignore"):
        for k in range(1, n):
            keys = (keys * _MIX) ^ hashes[k : k + m]
    return keys


def top_ngram_chars(hashes: np.ndarray, offsets: np.ndarray, n: int) -> int:
    """Characters covered by the most frequent n-gram: its length (words joined by spaces) × count.
    Among equally frequent n-grams the first one seen counts."""
    keys = ngram_keys(hashes, n)
    _, first, counts = np.unique(keys, return_index=True, return_counts=True)
    top = counts.max()
    i = int(first[counts == top].min())
    return int(offsets[i + n] - offsets[i] + n - 1) * int(top)


def duplicate_ngram_chars(hashes: np.ndarray, offsets: np.ndarray, n: int, step: int = 1 << 16) -> int:
    """Characters in n-grams that repeat an earlier one, scanning left to right and jumping past
    each repeat so that overlapping repeats are not counted twice."""
    if len(hashes) < n:
        return 0
    keys = ngram_keys(hashes, n)
    _, first, codes = np.unique(keys, return_index=True, return_inverse=True)
    if len(first) == len(keys):
        return 0
    is_first = np.zeros(len(keys), dtype=bool)
    is_first[first] = True
    i = int(np.argmin(is_first))  # before the first repeat every n-gram is new: no jumps yet
    # One byte per distinct n-gram (a set of Python ints would take some 70), and the scan
    # converts a slice of codes and offsets to Python at a time, not the whole document.
    marks = np.zeros(len(first), dtype=np.uint8)
    marks[codes[:i]] = 1
    seen = bytearray(marks.tobytes())
    repeated = 0
    while i < len(codes):
        lo = i
        chunk, ends = codes[lo : lo + step].tolist(), offsets[lo : lo + step + n].tolist()
        while i - lo < len(chunk):
            code = chunk[i - lo]
            if seen[code]:
                repeated += ends[i - lo + n] - ends[i - lo]
                i += n
            else:
                seen[code] = 1
                i += 1
    return repeated


_PARAGRAPH_BREAK = re.compile(r"\n{2,}")
_LINE_BREAK = re.compile(r"\n+")


def gopher_repetition(p, doc: Doc) -> list[str]:
    text = doc.text
    if not text:
        return ["gopher_empty"]
    failed = []
    paragraphs = _PARAGRAPH_BREAK.split(text.strip())
    dup, dup_chars = find_duplicates(paragraphs)
    if p.dup_para_frac is not None and dup / len(paragraphs) > p.dup_para_frac:
        failed.append("gopher_dup_para_frac")
    if p.dup_para_char_frac is not None and dup_chars / len(text) > p.dup_para_char_frac:
        failed.append("gopher_dup_para_chars")
    lines = _LINE_BREAK.split(text)
    dup, dup_chars = find_duplicates(lines)
    if p.dup_line_frac is not None and dup / len(lines) > p.dup_line_frac:
        failed.append("gopher_dup_line_frac")
    if p.dup_line_char_frac is not None and dup_chars / len(text) > p.dup_line_char_frac:
        failed.append("gopher_dup_line_chars")
    hashes, offsets = doc.word_hashes
    for n, frac in p.top_n_grams:
        if len(hashes) >= n and top_ngram_chars(hashes, offsets, n) / len(text) > frac:
            failed.append(f"gopher_top_{n}_gram")
    for n, frac in p.dup_n_grams:
        if duplicate_ngram_chars(hashes, offsets, n) / len(text) > frac:
            failed.append(f"gopher_dup_{n}_grams")
    return failed


# ------------------------------------------------------------------ C4 (Raffel et al. 2020)

_CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
_C4_END = (".", "?", "!", '"', "'")
_C4_END_CJK = _C4_END + ("。", "！", "？", "”", "」", "』")
_POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
# Sentence ends: a run of terminal punctuation, closing quotes/brackets, then a space or the end.
_SENTENCE_END = regex.compile(r"[.!?。！？]+[\"'”’)\]」』]*(?=\s|\Z)|[。！？]+")


def count_sentences(line: str) -> int:
    return max(1, len(_SENTENCE_END.findall(line)))


def c4_quality(p, doc: Doc) -> tuple[list[str], str | None]:
    """C4's line filter; returns the failed rules and the page reduced to its kept lines."""
    kept, sentences = [], 0
    ends = _C4_END_CJK if doc.cjk else _C4_END
    for line in doc.lines:
        line = line.strip()
        words = line.split()
        if p.max_word_length is not None and any(len(w) > p.max_word_length for w in words):
            continue
        if p.remove_citations:
            line = _CITATION.sub("", line)
        if p.filter_no_terminal_punct and (not line.endswith(ends) or line.endswith("...")):
            continue
        n_words = len(split_words(line, True)) if doc.cjk else len(words)
        if n_words < p.min_words_per_line:
            continue
        lower = line.lower()
        if p.filter_lorem_ipsum and "lorem ipsum" in lower:
            return ["c4_lorem_ipsum"], None
        if p.filter_javascript and "javascript" in lower:
            continue
        if p.filter_curly_bracket and "{" in line:
            return ["c4_curly_bracket"], None
        if p.filter_policy and any(s in lower for s in _POLICY):
            continue
        sentences += count_sentences(line)
        kept.append(line)
    if sentences < p.min_num_sentences:
        return ["c4_too_few_sentences"], None
    return [], "\n".join(kept).strip()


def c4_paragraph(p, doc: Doc) -> list[str]:
    """mC4: at least `min_paragraphs` lines of at least `min_paragraph_length` characters."""
    lengths = [len(line) for line in doc.text.split("\n")]
    if len(lengths) < p.min_paragraphs or min(heapq.nlargest(p.min_paragraphs, lengths)) < p.min_paragraph_length:
        return ["c4_few_paragraphs"]
    return []


def badword_patterns(folder: Path) -> dict[str, re.Pattern]:
    """tfds c4_utils' expressions: the words of each list as one plain alternation, whole words
    except in the languages written without spaces."""
    patterns = {}
    for path in sorted(folder.glob("*.txt")):
        words = sorted({w.strip().lower() for w in path.read_text(encoding="utf-8").splitlines() if w.strip()})
        alternation = "|".join(re.escape(w) for w in words)
        spaced = path.stem not in UNSPACED_LANGUAGES
        patterns[path.stem] = re.compile(rf"(?:\W|^)({alternation})(?:\W|$)" if spaced else alternation)
    return patterns


def c4_badwords(p, doc: Doc, lists: dict[str, re.Pattern]) -> list[str]:
    pattern = lists.get(doc.lang or p.default_language)
    if pattern is not None and pattern.search(doc.text.lower()):
        return ["c4_badwords"]
    return []


# ------------------------------------------------------------------ FineWeb (Penedo et al. 2024)


def fineweb_quality(p, doc: Doc) -> list[str]:
    lines = [line for line in doc.text.split("\n") if line.strip()]
    if not lines:
        return ["fineweb_empty"]
    failed = []
    ends = tuple(p.stop_chars) if p.stop_chars is not None else tuple(TERMINAL_PUNCTUATION)
    ratio = sum(1 for line in lines if line.endswith(ends)) / len(lines)
    if ratio < p.line_punct_thr and not (ratio == 0 and p.line_punct_exclude_zero):
        failed.append("fineweb_line_punct")
    if sum(1 for line in lines if len(line) <= p.short_line_length) / len(lines) > p.short_line_thr:
        failed.append("fineweb_short_lines")
    chars = len(doc.text) - doc.text.count("\n")
    if chars and find_duplicates(lines)[1] / chars > p.char_duplicates_ratio:
        failed.append("fineweb_dup_line_chars")
    n_words = len(doc.words)
    if n_words and doc.text.count("\n") / n_words > p.new_line_ratio:
        failed.append("fineweb_list_ratio")
    return failed


# ------------------------------------------------------------------ InternLM2 (Cai et al. 2024, 3.1.1)

_SEPARATOR_LINE = regex.compile(r"^\s*([-=_*#~+.·•|/\\<>])\1{2,}\s*$")
_SEPARATOR_RUN = regex.compile(r"([-=_*#~+.·•|/\\<>])\1{19,}")
_PUNCT = regex.compile(r"[\p{P}\p{S}]+")
_WORD_CHAR = regex.compile(r"[\p{L}\p{M}\p{N}]+")
_BROKEN = regex.compile(r"[\ufffd\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _chars_matching(pattern: regex.Pattern, text: str) -> int:
    """Characters of `text` inside matches of a character-class pattern: one copy of the text
    without them, not a list of every match."""
    return len(text) - len(pattern.sub("", text))


def internlm2(p, doc: Doc) -> list[str]:
    text = doc.text
    visible = len(text) - sum(text.count(c) for c in " \n\t\r\u3000\xa0")
    if visible == 0:
        return ["internlm2_no_content"]
    failed = []
    lines = doc.lines
    if lines:
        if max(map(len, lines)) > p.max_line_chars:
            failed.append("internlm2_long_line")
        if len(lines) >= p.min_lines_for_ratios and visible / len(lines) < p.min_chars_per_line:
            failed.append("internlm2_line_breaks")
        separators = sum(1 for line in lines if _SEPARATOR_LINE.match(line))
        if separators / len(lines) > p.max_separator_lines or len(_SEPARATOR_RUN.findall(text)) > p.max_separator_runs:
            failed.append("internlm2_separators")
    punct = _chars_matching(_PUNCT, text)
    word_chars = _chars_matching(_WORD_CHAR, text)
    if word_chars / visible < p.min_word_char_ratio:
        failed.append("internlm2_char_frequency")
    if _chars_matching(_BROKEN, text) / visible > p.max_broken_char_ratio:
        failed.append("internlm2_broken_chars")
    if punct / visible > p.max_punct_ratio:
        failed.append("internlm2_punct_excess")
    if visible >= p.min_chars_for_punct_check and punct / visible < p.min_punct_ratio:
        failed.append("internlm2_punct_missing")
    return failed


def judge(p, lists: dict[str, re.Pattern] | None, text: str, lang: str | None) -> tuple[list[str], str | None]:
    """The failed rules of one document, in priority order, and its C4-reduced text."""
    doc = Doc(text, is_cjk(text, lang), lang)
    failed: list[str] = []
    reduced = None
    if p.gopher_repetition:
        failed += gopher_repetition(p.gopher_repetition, doc)
    if p.gopher_quality:
        failed += gopher_quality(p.gopher_quality, doc)
    if p.c4_quality:
        c4_failed, reduced = c4_quality(p.c4_quality, doc)
        failed += c4_failed
    if p.c4_paragraph:
        failed += c4_paragraph(p.c4_paragraph, doc)
    if p.c4_badwords:
        failed += c4_badwords(p.c4_badwords, doc, lists)
    if p.fineweb_quality:
        failed += fineweb_quality(p.fineweb_quality, doc)
    if p.internlm2:
        failed += internlm2(p.internlm2, doc)
    return failed, reduced
