"""Word splitting and character classes for the rule filters, compiled over a whole batch.

The published Gopher/C4/FineWeb rules count "words" as a tokenizer sees them: punctuation is
its own token ("end." is two words), hyphenated compounds and English contractions are split
("well-known" → well - known, "don't" → don 't), while URLs, e-mail addresses, numbers with
separators (3.5, 1,000, 24/7, Covid-19), initials (U.S.) and common abbreviations (Dr.) stay
whole, as in spaCy's English tokenizer that datatrove's filters use. Chinese and Japanese have no
spaces: there every Han or kana character is a word, so the word-based rules see a meaningful
count instead of one "word" per line.

The tokens are those of one regular expression (kept as the reference in the tests). Here a
numba scanner tries its alternatives in the same order at each code point of a batch's text,
decoded once from the Arrow buffer, with character classes looked up in one table built from the
engines whose definitions the rules use: the `regex` module for `\\s`, `\\w` and Unicode
properties, Python's `str` methods for `isalpha`, `isspace`, `isdecimal` and line breaks.
"""

from __future__ import annotations

from functools import cache

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import regex

# Character classes, one bit each in `char_classes()`.
SPACE = 1 << 0  # regex \s
WORD = 1 << 1  # regex \w: the side of a \b
W = 1 << 2  # [\p{L}\p{M}\p{N}_]: what a word is made of
CJK = 1 << 3  # [\p{Han}\p{Hiragana}\p{Katakana}]
LETTER = 1 << 4  # \p{L}
NUMBER = 1 << 5  # \p{N}
LMN = 1 << 6  # [\p{L}\p{M}\p{N}]: a token without one is a "symbol"
ALPHA = 1 << 7  # str.isalpha
PYSPACE = 1 << 8  # str.isspace: str.strip and str.split
PUNCT = 1 << 9  # [\p{P}\p{S}]
TERMINAL = 1 << 10  # \p{Sentence_Terminal}: the characters that end a sentence in any script
DECIMAL = 1 << 11  # str.isdecimal: re's \d
LINE_BREAK = 1 << 12  # str.splitlines

_CLASSES = {
    SPACE: r"\s",
    WORD: r"\w",
    W: r"[\p{L}\p{M}\p{N}_]",
    CJK: r"[\p{Han}\p{Hiragana}\p{Katakana}]",
    LETTER: r"\p{L}",
    NUMBER: r"\p{N}",
    LMN: r"[\p{L}\p{M}\p{N}]",
    PUNCT: r"[\p{P}\p{S}]",
    TERMINAL: r"\p{Sentence_Terminal}",
}
_METHODS = {ALPHA: str.isalpha, PYSPACE: str.isspace, DECIMAL: str.isdecimal}

CJK_LANGS = frozenset({"zh", "ja", "wuu", "yue", "gan"})
# Share of Han/kana among letters above which a document without a language is treated as CJK,
# looked at in its first code points.
CJK_SCRIPT_SHARE = 0.3
CJK_SCRIPT_PREFIX = 20_000


@cache
def char_classes() -> np.ndarray:
    """The class bits of every code point (uint16, indexed by code point), built once per process."""
    chars = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000)
    codes = np.frombuffer(chars.encode("utf-32-le"), dtype=np.uint32)
    table = np.zeros(0x110000, dtype=np.uint16)
    for bit, pattern in _CLASSES.items():
        found = "".join(regex.findall(pattern, chars, flags=regex.V1))
        table[np.frombuffer(found.encode("utf-32-le"), dtype=np.uint32)] |= bit
    for bit, method in _METHODS.items():
        table[codes[np.fromiter(map(method, chars), dtype=bool, count=len(chars))]] |= bit
    table[[ord(c) for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"]] |= LINE_BREAK
    return table


@cache
def terminal_punctuation() -> frozenset[str]:
    """Unicode Sentence_Terminal characters."""
    return frozenset(chr(c) for c in np.flatnonzero(char_classes() & TERMINAL))


@numba.njit(cache=True, nogil=True)
def _decode(data: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Valid UTF-8 rows → one array of code points and each row's code-point offsets."""
    n = len(offsets) - 1
    cp = np.empty(offsets[n] - offsets[0], dtype=np.uint32)
    starts = np.empty(n + 1, dtype=np.int64)
    k = 0
    for row in range(n):
        starts[row] = k
        i = offsets[row]
        end = offsets[row + 1]
        while i < end:
            b = data[i]
            if b < 0x80:
                c = np.uint32(b)
                i += 1
            elif b < 0xE0:
                c = (np.uint32(b & 0x1F) << 6) | np.uint32(data[i + 1] & 0x3F)
                i += 2
            elif b < 0xF0:
                c = (np.uint32(b & 0x0F) << 12) | (np.uint32(data[i + 1] & 0x3F) << 6) | np.uint32(data[i + 2] & 0x3F)
                i += 3
            else:
                c = (
                    (np.uint32(b & 0x07) << 18)
                    | (np.uint32(data[i + 1] & 0x3F) << 12)
                    | (np.uint32(data[i + 2] & 0x3F) << 6)
                    | np.uint32(data[i + 3] & 0x3F)
                )
                i += 4
            cp[k] = c
            k += 1
    starts[n] = k
    return cp[:k], starts


def code_points(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A string column's text as one uint32 array of code points and each row's offsets in it
    (null rows are empty)."""
    texts = texts.cast(pa.large_string()) if pa.types.is_string(texts.type) else texts
    if texts.null_count:
        texts = pc.fill_null(texts, "")
    _, offsets, data = texts.buffers()
    offsets = np.frombuffer(offsets, dtype=np.int64)[texts.offset : texts.offset + len(texts) + 1]
    data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, dtype=np.uint8)
    return _decode(data, offsets)


@numba.njit(cache=True, nogil=True)
def _cjk_by_script(cp: np.ndarray, starts: np.ndarray, cls: np.ndarray) -> np.ndarray:
    out = np.zeros(len(starts) - 1, dtype=np.bool_)
    for d in range(len(out)):
        letters = 0
        cjk = 0
        for i in range(starts[d], min(starts[d + 1], starts[d] + CJK_SCRIPT_PREFIX)):
            f = cls[cp[i]]
            letters += (f & LETTER) != 0
            cjk += (f & CJK) != 0
        out[d] = letters > 0 and cjk >= CJK_SCRIPT_SHARE * letters
    return out


def cjk_documents(cp: np.ndarray, starts: np.ndarray, langs: pa.Array | None) -> np.ndarray:
    """Whether each document's words are characters: by its language when known, else by script."""
    by_script = _cjk_by_script(cp, starts, char_classes())
    if langs is None:
        return by_script
    known = pc.fill_null(pc.not_equal(langs, ""), False).to_numpy(zero_copy_only=False)
    listed = pc.is_in(langs, pa.array(sorted(CJK_LANGS))).to_numpy(zero_copy_only=False)
    return np.where(known, listed, by_script)


# ------------------------------------------------------------------ the token scanner


def _codes(s: str) -> np.ndarray:
    return np.array([ord(c) for c in s], dtype=np.uint32)


def _table(words: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Words as one code-point array and offsets, for the compiled code."""
    return _codes("".join(words)), np.cumsum([0] + [len(w) for w in words]).astype(np.int64)


_URL_END = _codes(".,;:!?)]}\"'»”’")  # trailing punctuation that is not part of a URL
_INITIALS_END = _codes(",;:!?)\"'»”’")  # after U.S.: a space, one of these or the end
_APOSTROPHES = _codes("'’")
_NUMBER_JOINERS = _codes("-–—/+,:")  # inside a number: 24/7, 1,000, 10:30, Covid-19
_EMAIL_LOCAL = _codes(".+-")
_HYPHEN = _codes("-")
# Common abbreviations that keep their period (a tokenizer's exception list, abridged).
_ABBR, _ABBR_OFF = _table(
    "Mr|Mrs|Ms|Dr|St|Jr|Sr|Mt|Prof|Gen|Gov|Sen|Rep|Rev|Inc|Ltd|Co|Corp|vs|etc|Jan|Feb|Mar|"
    "Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec".split("|")
)
# English contractions after an apostrophe ('s, 't, 're, ...), matched case-insensitively.
_CONTRACTIONS, _CONTRACTIONS_OFF = _table(["s", "t", "re", "ll", "ve", "d", "m"])
# Words split before a clitic: I|m, can|not, gon|na, got|ta, wan|na (case as written).
_HEAD, _HEAD_OFF = _table(["i", "I", "can", "Can", "gon", "got", "wan"])
_TAIL, _TAIL_OFF = _table(["m", "m", "not", "not", "na", "ta", "na"])
# The ASCII letters those start with: most words need not try either table.
_TABLE_START = np.zeros(128, dtype=np.bool_)
_TABLE_START[_ABBR[_ABBR_OFF[:-1]]] = True
_TABLE_START[_HEAD[_HEAD_OFF[:-1]]] = True


@numba.njit(cache=True, nogil=True, inline="always")
def member(c, chars) -> bool:
    for x in chars:
        if c == x:
            return True
    return False


@numba.njit(cache=True, nogil=True, inline="always")
def _is_word(c, cls, cjk: bool) -> bool:
    f = cls[c]
    return (f & W) != 0 and not (cjk and (f & CJK) != 0)


@numba.njit(cache=True, nogil=True, inline="always")
def _boundary(cp, a, b, i, cls) -> bool:
    """regex's \\b at i in the string cp[a:b]."""
    left = i > a and (cls[cp[i - 1]] & WORD) != 0
    right = i < b and (cls[cp[i]] & WORD) != 0
    return left != right


@numba.njit(cache=True, nogil=True, inline="always")
def _matches(cp, b, i, table, off, k, fold: bool) -> int:
    """The end of entry k of a word table matched at i (ASCII case folded, ſ as s, when `fold`), or -1."""
    n = off[k + 1] - off[k]
    if i + n > b:
        return -1
    for j in range(n):
        c = cp[i + j]
        t = table[off[k] + j]
        if fold:
            if 65 <= c <= 90:
                c += 32
            elif c == 0x17F:
                c = 115
        if c != t:
            return -1
    return i + n


@numba.njit(cache=True, nogil=True, inline="always")
def _contraction_end(cp, a, b, i, cls) -> int:
    """End of `(?i:s|t|re|ll|ve|d|m)\\b` at i, or -1."""
    for k in range(len(_CONTRACTIONS_OFF) - 1):
        e = _matches(cp, b, i, _CONTRACTIONS, _CONTRACTIONS_OFF, k, True)
        if e >= 0 and _boundary(cp, a, b, e, cls):
            return e
    return -1


@numba.njit(cache=True, nogil=True, inline="always")
def _email_run(cp, b, i, cls, extra) -> int:
    while i < b and ((cls[cp[i]] & WORD) != 0 or member(cp[i], extra)):
        i += 1
    return i


@numba.njit(cache=True, nogil=True)
def token_end(cp, a, b, i, cls, cjk: bool) -> int:
    """End of the token starting at i in the string cp[a:b], or -1 when i starts none (a space).
    The alternatives in order: a Han/kana character (CJK mode), URL, e-mail, initials,
    abbreviation, a word before its clitic, contraction, word, dot run, dash run, one symbol."""
    c = cp[i]
    f = cls[c]
    if cjk and (f & CJK) != 0:
        return i + 1
    # URL: http://, https:// or www. and then up to the space, less trailing punctuation
    p = -1
    if c == 104 and i + 4 < b and cp[i + 1] == 116 and cp[i + 2] == 116 and cp[i + 3] == 112:  # http
        if cp[i + 4] == 58 and i + 6 < b and cp[i + 5] == 47 and cp[i + 6] == 47:
            p = i + 7
        elif cp[i + 4] == 115 and i + 7 < b and cp[i + 5] == 58 and cp[i + 6] == 47 and cp[i + 7] == 47:
            p = i + 8
    elif c == 119 and i + 3 < b and cp[i + 1] == 119 and cp[i + 2] == 119 and cp[i + 3] == 46:  # www.
        p = i + 4
    if p >= 0 and p < b and (cls[cp[p]] & SPACE) == 0:
        e = p
        while e < b and (cls[cp[e]] & SPACE) == 0:
            e += 1
        while e > p + 1 and member(cp[e - 1], _URL_END):
            e -= 1
        return e
    # e-mail: [\w.+-]+@[\w-]+(?:\.[\w-]+)+
    e = _email_run(cp, b, i, cls, _EMAIL_LOCAL)
    if e > i and e < b and cp[e] == 64:
        q = _email_run(cp, b, e + 1, cls, _HYPHEN)
        if q > e + 1:
            parts = 0
            while q + 1 < b and cp[q] == 46:
                r = _email_run(cp, b, q + 1, cls, _HYPHEN)
                if r == q + 1:
                    break
                q = r
                parts += 1
            if parts:
                return q
    # initials: (?:\p{L}\.)+ before a space, closing punctuation or the end
    k = i
    while k + 1 < b and (cls[cp[k]] & LETTER) != 0 and cp[k + 1] == 46:
        k += 2
    if k > i and (k == b or (cls[cp[k]] & SPACE) != 0 or member(cp[k], _INITIALS_END)):
        return k
    if c < 128 and _TABLE_START[c] and _boundary(cp, a, b, i, cls):
        for j in range(len(_ABBR_OFF) - 1):
            e = _matches(cp, b, i, _ABBR, _ABBR_OFF, j, False)
            if e >= 0 and e < b and cp[e] == 46:
                return e + 1
        for j in range(len(_HEAD_OFF) - 1):
            e = _matches(cp, b, i, _HEAD, _HEAD_OFF, j, False)
            if e >= 0:
                t = _matches(cp, b, e, _TAIL, _TAIL_OFF, j, False)
                if t >= 0 and _boundary(cp, a, b, t, cls):
                    return e
    if member(c, _APOSTROPHES):
        e = _contraction_end(cp, a, b, i + 1, cls)
        if e >= 0:
            return e
    if _is_word(c, cls, cjk):
        e = i + 1
        while e < b and _is_word(cp[e], cls, cjk):
            e += 1
        # joined parts: 3.5, U.S, don't-less apostrophes, 24/7, Covid-19
        while e + 1 < b and _is_word(cp[e + 1], cls, cjk):
            s = cp[e]
            if not (
                s == 46
                or (member(s, _APOSTROPHES) and _contraction_end(cp, a, b, e + 1, cls) < 0)
                or (member(s, _NUMBER_JOINERS) and ((cls[cp[e + 1]] & NUMBER) != 0 or (cls[cp[e - 1]] & NUMBER) != 0))
            ):
                break
            e += 2
            while e < b and _is_word(cp[e], cls, cjk):
                e += 1
        if e < b and (cp[e] == 45 or cp[e] == 47) and (e + 1 == b or (cls[cp[e + 1]] & SPACE) != 0):
            e += 1
        return e
    if (c == 46 or c == 45) and i + 1 < b and cp[i + 1] == c:  # ... and --
        e = i + 2
        while e < b and cp[e] == c:
            e += 1
        return e
    if (f & SPACE) == 0:
        return i + 1
    return -1


@numba.njit(cache=True, nogil=True)
def _tokens(cp, starts, cjk, cls) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cap = len(cp) // 6 + 16  # prose has about one token per 5-6 characters
    begin = np.empty(cap, dtype=np.int64)
    end = np.empty(cap, dtype=np.int64)
    doc_tokens = np.empty(len(starts), dtype=np.int64)
    n = 0
    for d in range(len(starts) - 1):
        doc_tokens[d] = n
        a = starts[d]
        b = starts[d + 1]
        i = a
        while i < b:
            e = token_end(cp, a, b, i, cls, cjk[d])
            if e < 0:
                i += 1
                continue
            if n == cap:
                cap *= 2
                begin = np.concatenate((begin, np.empty(cap - n, dtype=np.int64)))
                end = np.concatenate((end, np.empty(cap - n, dtype=np.int64)))
            begin[n] = i
            end[n] = e
            n += 1
            i = e
    doc_tokens[len(starts) - 1] = n
    return begin[:n], end[:n], doc_tokens


def tokens(cp: np.ndarray, starts: np.ndarray, cjk: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every document's word tokens: their start and end code points and each document's first token."""
    return _tokens(cp, starts, cjk.astype(np.bool_), char_classes())


def split_words(text: str, cjk: bool = False) -> list[str]:
    """Words and punctuation tokens of one text (Han and kana one per character when `cjk`)."""
    cp, starts = code_points(pa.array([text], type=pa.large_string()))
    begin, end, _ = tokens(cp, starts, np.array([cjk]))
    return [text[b:e] for b, e in zip(begin.tolist(), end.tolist())]
