"""Turning documents into dedup keys: normalized words, word n-gram hashes, text and URL keys.

Shingle hashing runs on the UTF-8 bytes of a whole Arrow batch with numpy, with no Python
loop per word or per shingle: byte classes find the words, each word's polynomial hash comes
from byte prefix sums, and each shingle's hash from prefix sums over its words' mixed hashes,
all in wrapping uint64 arithmetic. The scalar `shingle_hash` gives the same value for one
shingle ("w1 w2 ... wn", words joined by a space): passing it as `hashfunc` to
`datasketch.MinHash` reproduces our signatures.
"""

from __future__ import annotations

import hashlib
from urllib.parse import parse_qsl, urlencode, urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from refinery.pipeline.schema import replace_rows

_NON_WORD = r"[^\p{L}\p{N}\p{M}]+"
_IDEOGRAPH = r"([\p{Han}\p{Hiragana}\p{Katakana}])"
_M64 = (1 << 64) - 1
_BASE = 0x9E3779B97F4A7C15  # odd, so invertible modulo 2^64
_BASE_INV = pow(_BASE, -1, 1 << 64)
_FMIX1, _FMIX2 = 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53
_CHUNK_BYTES = 1 << 18  # text bytes hashed at once: the uint64 work arrays stay near 2 MB
SEPARATOR, WORD, IDEOGRAPH = 0, 1, 2


def _fmix64_scalar(h: int) -> int:
    h ^= h >> 33
    h = (h * _FMIX1) & _M64
    h ^= h >> 33
    h = (h * _FMIX2) & _M64
    return h ^ (h >> 33)


def _poly_scalar(values) -> int:
    """sum(values[j] * BASE^j) mod 2^64."""
    h = 0
    for v in reversed(values):
        h = (h * _BASE + v) & _M64
    return h


def shingle_hash(shingle: str | bytes, bits: int = 32) -> int:
    """Hash of one shingle ("w1 w2 ... wn", words joined by one space), equal to what
    `shingle_hashes` computes for it: each word's UTF-8 bytes hashed as the polynomial
    sum(byte_k * BASE^k) mod 2^64 and mixed with MurmurHash3's fmix64, the words combined as
    sum(word_j * BASE^j) mod 2^64, mixed again; the high 32 bits, or all 64."""
    if isinstance(shingle, bytes):
        shingle = shingle.decode("utf-8")
    words = [_fmix64_scalar(_poly_scalar(w.encode("utf-8"))) for w in shingle.split(" ")]
    return _fmix64_scalar(_poly_scalar(words)) >> (64 - bits)


def _fmix64(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(33))
    h *= np.uint64(_FMIX1)
    h ^= h >> np.uint64(33)
    h *= np.uint64(_FMIX2)
    h ^= h >> np.uint64(33)
    return h


class _Powers:
    """BASE^t and BASE^-t mod 2^64 for t < n, shared by all calls and grown on demand up to
    a cap (a larger single document gets tables of its own, not kept)."""

    CACHE_LIMIT = 1 << 23

    def __init__(self):
        self.tables = self._make(1)

    @staticmethod
    def _make(size: int) -> tuple[np.ndarray, np.ndarray]:
        up = np.cumprod(np.full(size, _BASE, dtype=np.uint64)) * np.uint64(_BASE_INV)
        down = np.cumprod(np.full(size, _BASE_INV, dtype=np.uint64)) * np.uint64(_BASE)
        return up, down

    def __call__(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        tables = self.tables
        if len(tables[0]) >= n:
            return tables
        if n > self.CACHE_LIMIT:
            return self._make(n)
        self.tables = tables = self._make(min(max(n, 2 * len(tables[0])), self.CACHE_LIMIT))
        return tables


class _CodePoints:
    """Class of each non-ASCII code point, asked of the same RE2 character classes that
    `normalize_words` uses (so both paths agree), once per distinct code point seen."""

    def __init__(self):
        self.table = np.full(0x110000, 255, dtype=np.uint8)

    def classes(self, cps: np.ndarray) -> np.ndarray:
        cps = np.minimum(cps, 0x10FFFF)
        out = self.table[cps]
        unknown = np.unique(cps[out == 255])
        if len(unknown):
            chars = pa.array(
                [chr(c) if not 0xD800 <= c < 0xE000 else "\ufffd" for c in unknown.tolist()], pa.large_string()
            )
            word = pc.match_substring_regex(chars, "^[\\p{L}\\p{N}\\p{M}]$").to_numpy(zero_copy_only=False)
            ideograph = pc.match_substring_regex(chars, "^" + _IDEOGRAPH[1:-1] + "$").to_numpy(zero_copy_only=False)
            self.table[unknown] = np.where(ideograph, IDEOGRAPH, np.where(word, WORD, SEPARATOR))
            out = self.table[cps]
        return out


_powers = _Powers()
_code_points = _CodePoints()


def normalize_words(texts: pa.Array) -> pa.Array:
    """Reference normalization: NFKC, lower case, every run of characters that are not
    letters, digits or marks becomes one space, and each Han, Hiragana or Katakana character
    stands alone (scripts written without spaces)."""
    t = pc.utf8_lower(pc.utf8_normalize(texts, "NFKC"))
    t = pc.replace_substring_regex(t, _NON_WORD, " ")
    return pc.replace_substring_regex(t, _IDEOGRAPH, r" \1 ")


def _text_array(texts: pa.Array | pa.ChunkedArray) -> pa.LargeStringArray:
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    return pc.fill_null(texts.cast(pa.large_string()), "")


def _bytes(texts: pa.LargeStringArray) -> tuple[np.ndarray, np.ndarray]:
    """Zero-copy (UTF-8 bytes, offsets into them starting at 0) of a large_string array."""
    _, offsets_buf, data_buf = texts.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[texts.offset : texts.offset + len(texts) + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, dtype=np.uint8)
    return data[offsets[0] : offsets[-1]], offsets - offsets[0]


def _prepared(texts: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """UTF-8 bytes and offsets, texts with any non-ASCII byte NFKC-normalized and lower-cased
    by Arrow's kernels (ASCII texts are NFKC-invariant; they are lower-cased per byte later)."""
    texts = _text_array(texts)
    data, offsets = _bytes(texts)
    high = np.flatnonzero(data >= 0x80)
    if len(high):
        docs = np.unique(np.searchsorted(offsets, high, side="right") - 1)
        texts = replace_rows(texts, docs, _lower_nfkc(texts.take(pa.array(docs))))
        data, offsets = _bytes(texts)
    return data, offsets


def _lower_nfkc(texts: pa.LargeStringArray) -> pa.LargeStringArray:
    """NFKC and lower case; invalid UTF-8 (possible in Parquet input) is decoded with
    replacement characters first instead of failing the batch."""
    try:
        return pc.utf8_lower(pc.utf8_normalize(texts, "NFKC"))
    except pa.ArrowInvalid:
        raw = texts.cast(pa.large_binary()).to_pylist()
        return _lower_nfkc(pa.array([b.decode("utf-8", "replace") for b in raw], pa.large_string()))


def _ascii_alnum(data: np.ndarray) -> np.ndarray:
    """Which bytes are ASCII letters or digits (uint8 arithmetic)."""
    return ((data | np.uint8(0x20)) - np.uint8(97) < 26) | (data - np.uint8(48) < 10)


def _word_spans(data: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start and end (exclusive) byte of every word, and each document's word count.

    A word is a run of letters, digits and marks, or one Han, Hiragana or Katakana character;
    never across documents. ASCII bytes are classified with uint8 arithmetic; only the lead
    bytes of multi-byte characters are decoded (vectorized UTF-8) and looked up."""
    n = len(data)
    word = _ascii_alnum(data)
    alone_starts = alone_ends = np.zeros(0, dtype=np.int64)
    lead = np.flatnonzero(data >= 0xC0)
    if len(lead):
        first = data[lead].astype(np.int64)
        length = 2 + (first >= 0xE0) + (first >= 0xF0)
        cps = first & (0x7F >> length)
        padded = np.concatenate((data, np.zeros(3, dtype=np.uint8)))
        for k in (1, 2, 3):
            cps = np.where(length > k, (cps << 6) | (padded[lead + k] & 0x3F), cps)
        classes = _code_points.classes(cps)
        lettered = classes == WORD
        spans = np.repeat(lead[lettered], length[lettered]) + _within(length[lettered])
        word[spans[spans < n]] = True
        alone = classes == IDEOGRAPH
        alone_starts, alone_ends = lead[alone], np.minimum(lead[alone] + length[alone], n)
    boundary = np.zeros(n + 1, dtype=bool)
    boundary[offsets] = True
    previous = np.zeros(n, dtype=bool)
    previous[1:] = word[:-1]
    following = np.zeros(n, dtype=bool)
    following[:-1] = word[1:]
    starts = np.flatnonzero(word & (~previous | boundary[:-1]))
    ends = np.flatnonzero(word & (~following | boundary[1:])) + 1
    if len(alone_starts):
        starts = np.sort(np.concatenate((starts, alone_starts)))
        ends = np.sort(np.concatenate((ends, alone_ends)))
    counts = np.diff(np.searchsorted(starts, offsets))
    return starts, ends, counts


def _within(lengths: np.ndarray) -> np.ndarray:
    """0, 1, ..., length - 1 for each length, concatenated."""
    return np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)


def _shingle_ranges(counts: np.ndarray, ngram: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first word, last word, shingles per document) of every shingle, in document order:
    all n-grams, or one shingle of all words for a document with fewer than `ngram` words."""
    first_word = np.cumsum(counts) - counts
    ends_early = np.zeros(int(counts.sum()), dtype=bool)
    for j in range(ngram - 1):  # the last ngram - 1 words of a document end no n-gram
        has = counts > j
        ends_early[first_word[has] + j] = True
    last = np.flatnonzero(~ends_early)
    first = last - (ngram - 1)
    short = np.flatnonzero((counts > 0) & (counts < ngram))
    if len(short):
        first = np.concatenate((first, first_word[short]))
        last = np.concatenate((last, first_word[short] + counts[short] - 1))
        order = np.argsort(first, kind="stable")
        first, last = first[order], last[order]
    per_doc = np.where(counts >= ngram, counts - ngram + 1, np.minimum(counts, 1))
    return first, last, per_doc


def _word_hashes(data: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hash and per-document count of every word: (P[end] - P[start]) * BASE^-start over byte
    prefix sums P, then fmix64 (so a word's hash does not depend on where it lies)."""
    starts, ends, counts = _word_spans(data, offsets)
    lower = data + (((data - np.uint8(65)) < 26).view(np.uint8) << np.uint8(5))
    up, down = _powers(len(data) + 1)
    prefix = np.zeros(len(data) + 1, dtype=np.uint64)
    np.cumsum(np.multiply(lower, up[: len(data)], dtype=np.uint64), out=prefix[1:])
    words = prefix[ends]
    words -= prefix[starts]
    words *= down[starts]
    return _fmix64(words), counts


def _shingles_of_words(words: np.ndarray, counts: np.ndarray, ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """64-bit shingle hashes from word hashes: (Q[last + 1] - Q[first]) * BASE^-first over word
    prefix sums Q of word_i * BASE^i, then fmix64; and the shingles per document. (`words` is
    overwritten.)"""
    up, down = _powers(len(words) + 1)
    words *= up[: len(words)]
    q = np.zeros(len(words) + 1, dtype=np.uint64)
    np.cumsum(words, out=q[1:])
    first, last, per_doc = _shingle_ranges(counts, ngram)
    h = q[last + 1]
    h -= q[first]
    h *= down[first]
    return _fmix64(h), per_doc


def _hash_chunk(data: np.ndarray, offsets: np.ndarray, ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """Shingle hashes and per-document shingle counts for the documents of one chunk. Everything
    wraps modulo 2^64."""
    return _shingles_of_words(*_word_hashes(data, offsets), ngram)


def _hash_long(data: np.ndarray, ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """`_hash_chunk` of one document larger than a chunk, with work arrays of a chunk's size:
    its words are hashed window by window, each window ending on an ASCII byte that is not a
    letter or digit (no word spans one), and its shingles come from all its words."""
    words = []
    lo = 0
    while lo < len(data):
        hi = min(lo + _CHUNK_BYTES, len(data))
        while hi < len(data):
            tail = data[hi - _CHUNK_BYTES // 2 : hi]
            breaks = np.flatnonzero((tail < 0x80) & ~_ascii_alnum(tail))
            if len(breaks):
                hi = hi - len(tail) + int(breaks[-1]) + 1
                break
            hi = min(hi + _CHUNK_BYTES // 2, len(data))  # no separator yet: a longer window
        words.append(_word_hashes(data[lo:hi], np.array([0, hi - lo]))[0])
        lo = hi
    return _shingles_of_words(np.concatenate(words), np.array([sum(map(len, words))]), ngram)


def shingle_hashes(texts: pa.Array | pa.ChunkedArray, ngram: int, bits: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every word n-gram of every document: (hashes, offsets). 32 bits (uint32, the
    high half, MinHash's input) or 64 bits (uint64, for exact look-ups in large sets).

    A document with fewer than `ngram` words has one shingle of all its words; one with no
    words has none. Vectorized over the batch, in chunks of whole documents (~256 KB)."""
    data, offsets = _prepared(texts)
    n_docs = len(offsets) - 1
    hashes, counts = [], []
    doc = 0
    while doc < n_docs:
        stop = int(np.searchsorted(offsets, offsets[doc] + _CHUNK_BYTES, side="right")) - 1
        stop = min(max(stop, doc + 1), n_docs)
        lo, hi = offsets[doc], offsets[stop]
        if hi - lo > _CHUNK_BYTES:
            h, c = _hash_long(data[lo:hi], ngram)
        else:
            h, c = _hash_chunk(data[lo:hi], offsets[doc : stop + 1] - lo, ngram)
        hashes.append(h if bits == 64 else (h >> np.uint64(32)).astype(np.uint32))
        counts.append(c)
        doc = stop
    out_offsets = np.zeros(n_docs + 1, dtype=np.int64)
    if counts:
        np.cumsum(np.concatenate(counts), out=out_offsets[1:])
    empty = np.zeros(0, dtype=np.uint64 if bits == 64 else np.uint32)
    return (np.concatenate(hashes) if hashes else empty), out_offsets


def words(text: str) -> list[str]:
    """The normalized words of one document, by the reference path: `normalize_words` for
    every text, then a split on spaces."""
    return normalize_words(pa.array([text or ""], pa.large_string()))[0].as_py().split()


def shingles(text: str, ngram: int) -> list[str]:
    """The shingles of one document as strings (for checks and for datasketch)."""
    toks = words(text)
    if not toks:
        return []
    if len(toks) < ngram:
        return [" ".join(toks)]
    return [" ".join(toks[i : i + ngram]) for i in range(len(toks) - ngram + 1)]


def _normalize_text(texts: pa.Array) -> pa.Array:
    """Exact-dedup normal form: NFKC, lower case, digits as 0, punctuation dropped, spaces collapsed
    (the CCNet normalization)."""
    t = pc.utf8_lower(pc.utf8_normalize(pc.fill_null(texts.cast(pa.large_string()), ""), "NFKC"))
    t = pc.replace_substring_regex(t, r"\p{N}", "0")
    t = pc.replace_substring_regex(t, r"[^\p{L}\p{N}\s]+", "")
    return pc.utf8_trim_whitespace(pc.replace_substring_regex(t, r"\s+", " "))


def _digest64(values: list[str | None]) -> list[int | None]:
    return [
        None
        if v is None
        else int.from_bytes(hashlib.blake2b(v.encode("utf-8"), digest_size=8).digest(), "little", signed=True)
        for v in values
    ]


def text_keys(texts: pa.Array | pa.ChunkedArray) -> list[int | None]:
    """Signed 64-bit hash of each normalized text; None for a text empty after normalization."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    normal = _normalize_text(texts).to_pylist()
    return _digest64([t or None for t in normal])


def normalize_url(url: str | None) -> str | None:
    """Canonical URL: http(s) folded, host lower-cased without `www.` and default port, fragment
    and tracking parameters dropped, query sorted, trailing slash removed. None if unusable."""
    if not url or not url.strip():
        return None
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        return None
    if not host:
        return None
    if host.startswith("www."):
        host = host[4:]
    scheme = parts.scheme.lower()
    if port and (scheme, port) not in (("http", 80), ("https", 443)):
        host = f"{host}:{port}"
    query = sorted(
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not k.lower().startswith("utm_")
    )
    path = parts.path.rstrip("/") or ""
    return f"{host}{path}" + (f"?{urlencode(query)}" if query else "")


def url_keys(urls: pa.Array | pa.ChunkedArray) -> list[int | None]:
    """Signed 64-bit hash of each normalized URL; None for a missing or unparsable URL."""
    return _digest64([normalize_url(u) for u in urls.to_pylist()])
