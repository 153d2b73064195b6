"""Turning documents into dedup keys: normalized words, word n-gram hashes, text and URL keys.

Words are hashed once per distinct word in a batch and n-grams are combined from those
hashes with vectorized 64-bit arithmetic, so no Python loop runs per shingle. The scalar
`shingle_hash` gives the same value for one shingle ("w1 w2 ... wn", words joined by a
space): passing it as `hashfunc` to `datasketch.MinHash` reproduces our signatures.
"""
from __future__ import annotations

import hashlib
from urllib.parse import parse_qsl, urlencode, urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

WORD_SPLIT = r"[^\p{L}\p{N}]+"
_M64 = (1 << 64) - 1
_SEED = 0x9E3779B97F4A7C15
_MUL = 0xBF58476D1CE4E5B9
_FMIX1, _FMIX2 = 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53


def word_hash(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")


def _fmix64_scalar(h: int) -> int:
    h ^= h >> 33
    h = (h * _FMIX1) & _M64
    h ^= h >> 33
    h = (h * _FMIX2) & _M64
    return h ^ (h >> 33)


def shingle_hash(shingle: str | bytes) -> int:
    """32-bit hash of one shingle, equal to what `shingle_hashes` computes for it."""
    if isinstance(shingle, bytes):
        shingle = shingle.decode("utf-8")
    h = _SEED
    for word in shingle.split(" "):
        h = ((h ^ word_hash(word)) * _MUL) & _M64
    return _fmix64_scalar(h) >> 32


def _fmix64(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(_FMIX1)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(_FMIX2)
    return h ^ (h >> np.uint64(33))


def words(texts: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """NFKC-normalized, lower-cased letter/digit runs: (flat words, per-document offsets)."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    texts = pc.fill_null(texts.cast(pa.large_string()), "")
    split = pc.split_pattern_regex(pc.utf8_lower(pc.utf8_normalize(texts, "NFKC")), WORD_SPLIT)
    flat = pc.list_flatten(split)
    doc = pc.list_parent_indices(split).to_numpy()
    keep = pc.not_equal(pc.binary_length(flat), 0).to_numpy(zero_copy_only=False)
    flat = flat.filter(pa.array(keep))
    counts = np.bincount(doc[keep], minlength=len(texts))
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return flat, offsets


def shingles(text: str, ngram: int) -> list[str]:
    """The shingles of one document as strings (for checks and for datasketch)."""
    flat, _ = words(pa.array([text], pa.large_string()))
    toks = flat.to_pylist()
    if not toks:
        return []
    if len(toks) < ngram:
        return [" ".join(toks)]
    return [" ".join(toks[i : i + ngram]) for i in range(len(toks) - ngram + 1)]


def shingle_hashes(texts: pa.Array | pa.ChunkedArray, ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of every word n-gram of every document: (hashes as uint32, offsets).

    A document with fewer than `ngram` words has one shingle of all its words; one with no
    words has none."""
    flat, offsets = words(texts)
    if len(flat) == 0:
        return np.zeros(0, dtype=np.uint32), np.zeros(len(offsets), dtype=np.int64)
    encoded = pc.dictionary_encode(flat)
    vocab = np.fromiter((word_hash(w) for w in encoded.dictionary.to_pylist()), dtype=np.uint64, count=len(encoded.dictionary))
    tokens = vocab[encoded.indices.to_numpy()]
    lengths = np.diff(offsets)
    counts = np.where(lengths >= ngram, lengths - ngram + 1, np.minimum(lengths, 1))
    starts = np.repeat(offsets[:-1], counts) + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
    ends = np.repeat(offsets[1:], counts)
    h = np.full(len(starts), _SEED, dtype=np.uint64)
    for j in range(ngram):
        pos = starts + j
        live = pos < ends
        mixed = (h ^ tokens[np.minimum(pos, len(tokens) - 1)]) * np.uint64(_MUL)
        h = np.where(live, mixed, h)
    out_offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=out_offsets[1:])
    return (_fmix64(h) >> np.uint64(32)).astype(np.uint32), out_offsets


def _normalize_text(texts: pa.Array) -> pa.Array:
    """Exact-dedup normal form: NFKC, lower case, digits as 0, punctuation dropped, spaces collapsed
    (the CCNet normalization)."""
    t = pc.utf8_lower(pc.utf8_normalize(pc.fill_null(texts.cast(pa.large_string()), ""), "NFKC"))
    t = pc.replace_substring_regex(t, r"\p{N}", "0")
    t = pc.replace_substring_regex(t, r"[^\p{L}\p{N}\s]+", "")
    return pc.utf8_trim_whitespace(pc.replace_substring_regex(t, r"\s+", " "))


def _digest64(values: list[str | None]) -> list[int | None]:
    return [
        None if v is None else int.from_bytes(hashlib.blake2b(v.encode("utf-8"), digest_size=8).digest(), "little", signed=True)
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
    if port and not (scheme, port) in (("http", 80), ("https", 443)):
        host = f"{host}:{port}"
    query = sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not k.lower().startswith("utm_"))
    path = parts.path.rstrip("/") or ""
    return f"{host}{path}" + (f"?{urlencode(query)}" if query else "")


def url_keys(urls: pa.Array | pa.ChunkedArray) -> list[int | None]:
    """Signed 64-bit hash of each normalized URL; None for a missing or unparsable URL."""
    return _digest64([normalize_url(u) for u in urls.to_pylist()])
