"""datatrove 0.10 beside xxhash 4: its MinHash signature step hands `str` shingles to xxhash,
which now accepts only bytes. The peers' steps get the same 64-bit xxhash of the UTF-8 bytes."""

from __future__ import annotations


def xxhash64_utf8(text: str) -> int:
    import xxhash

    return xxhash.xxh64_intdigest(text.encode())


def minhash_signature(step):
    """A `MinhashDedupSignature` hashing its shingles' UTF-8 bytes."""
    step._hash_func = xxhash64_utf8
    return step
