"""Dedup: MinHash values equal datasketch's, banding equals datasketch's, local clustering,
keep rule, the stage's verdict and statistics."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from datasketch import MinHash, MinHashLSH
from dedup_data import multilingual_table, sms_table

from refinery.pipeline.registry import stage_class
from refinery.pipeline.stage import apply_verdict
from refinery.stages.dedup import Dedup, DedupParams, deduplicate, minhash, resolution_stats, text


def test_registered():
    assert stage_class("dedup") is Dedup


@pytest.mark.parametrize("num_perm,seed,ngram", [(128, 1, 5), (64, 7, 3)])
def test_signatures_equal_datasketch(num_perm, seed, ngram):
    table = sms_table().slice(0, 60)
    stage = Dedup(DedupParams(num_perm=num_perm, seed=seed, ngram=ngram))
    sigs, has = stage.minhashes(table)
    assert has.sum() > 50
    for i, doc in enumerate(table.column("text").to_pylist()):
        ref = MinHash(num_perm=num_perm, seed=seed, hashfunc=text.shingle_hash)
        ref.update_batch(text.shingles(doc, ngram))
        assert np.array_equal(ref.hashvalues, sigs[i]), doc


def test_a_document_longer_than_a_block_equals_datasketch():
    """One document larger than a hashing chunk and of more shingles than a MinHash block is
    hashed window by window and reduced block by block: the same values."""
    texts = sms_table().column("text").to_pylist()
    long_doc = " ".join(f"{t} {i}" for i, t in enumerate(texts * 3))
    while len(long_doc.encode()) <= text._CHUNK_BYTES:
        long_doc += " " + long_doc
    table = pa.table({"id": ["long", "short"], "text": [long_doc, texts[0]]})
    stage = Dedup(DedupParams(num_perm=64, seed=3, ngram=5))
    sigs, _ = stage.minhashes(table)
    shingles = text.shingles(long_doc, 5)
    assert len(shingles) > 2 * 8192  # many thousands of shingles in one signature
    for i, doc in enumerate((long_doc, texts[0])):
        ref = MinHash(num_perm=64, seed=3, hashfunc=text.shingle_hash)
        ref.update_batch(text.shingles(doc, 5))
        assert np.array_equal(ref.hashvalues, sigs[i])


@pytest.mark.parametrize("ngram", [5, 2])
def test_vectorized_hashes_equal_scalar_reference(monkeypatch, ngram):
    """Whole-batch hashing (also cut into many small chunks, with power tables beyond the
    cache) gives, document by document, the scalar `shingle_hash` of the reference
    shingles, on ASCII and non-ASCII text."""
    table = pa.concat_tables([multilingual_table(), sms_table().slice(0, 100)])
    docs = table.column("text").to_pylist() + [
        "",
        "Ends with a word",
        "starts",
        "中文",
        "İstanbul’da ‘quoted’ — e\u0301 ﬁ",
    ]
    expected = [[text.shingle_hash(s) for s in text.shingles(doc, ngram)] for doc in docs]
    for chunk_bytes, cached_powers in ((1 << 18, 1 << 23), (200, 128)):
        monkeypatch.setattr(text, "_CHUNK_BYTES", chunk_bytes)
        monkeypatch.setattr(text._Powers, "CACHE_LIMIT", cached_powers)
        monkeypatch.setattr(text, "_powers", text._Powers())
        hashes, offsets = text.shingle_hashes(pa.array(docs, pa.large_string()), ngram)
        assert offsets[-1] == len(hashes) > 1000
        for i, doc in enumerate(docs):
            assert hashes[offsets[i] : offsets[i + 1]].tolist() == expected[i], doc


def test_words_of_scripts_without_spaces():
    assert text.words("日本語のテキスト, ABC déjà-vu") == [
        "日",
        "本",
        "語",
        "の",
        "テ",
        "キ",
        "ス",
        "ト",
        "abc",
        "déjà",
        "vu",
    ]
    assert text.words("Ｆｕｌｌ\u00a0width ½") == ["full", "width", "1", "2"]


def test_banding_equals_datasketch():
    for threshold in (0.5, 0.7, 0.8, 0.9):
        lsh = MinHashLSH(threshold=threshold, num_perm=128)
        assert minhash.lsh_params(threshold, 128) == (lsh.b, lsh.r)


def test_shingles_and_normalization():
    assert text.shingles("Hello, World! a b c", 5) == ["hello world a b c"]
    assert text.shingles("one two", 5) == ["one two"]
    assert text.shingles("  ...  ", 5) == []
    assert text.normalize_url("HTTPS://www.Example.com:443/a/?b=2&a=1&utm_source=x#top") == "example.com/a?a=1&b=2"
    assert text.normalize_url("not a url") is None


def test_minhash_clusters_real_near_duplicates():
    table = sms_table()
    res = deduplicate(table, method="minhash")
    exact = deduplicate(table, method="exact")
    assert res.num_rows > exact.num_rows > 0  # near duplicates beyond exact copies
    # keep rule: every cluster's kept document is its smallest id and names the cluster
    for cluster, group in _groups(res, "minhash_cluster").items():
        assert min(group) == cluster
    kept = res.filter(res.column("reason").is_null())
    assert kept.column("id").to_pylist() == kept.column("minhash_cluster").to_pylist()
    assert set(res.column("reason").drop_null().to_pylist()) == {"near_duplicate"}
    # a known near-duplicate pair (same spam, other numbers) is found
    texts = dict(zip(table.column("id").to_pylist(), table.column("text").to_pylist()))
    clusters = dict(zip(res.column("id").to_pylist(), res.column("minhash_cluster").to_pylist()))
    pairs = [
        (a, b)
        for a, b in zip(res.column("id").to_pylist(), res.column("minhash_cluster").to_pylist())
        if a != b and texts[a] != texts[b]
    ]
    assert pairs and all(clusters[a] == clusters[b] for a, b in pairs)


def test_verification_checks_members_against_kept_document():
    table = sms_table()
    verified = deduplicate(table, method="minhash", verify=True)
    texts = dict(zip(table.column("id").to_pylist(), table.column("text").to_pylist()))
    dropped = verified.filter(verified.column("reason").is_valid())
    assert dropped.num_rows > 0
    for doc, kept in zip(dropped.column("id").to_pylist(), dropped.column("minhash_cluster").to_pylist()):
        a, b = set(text.shingles(texts[doc], 5)), set(text.shingles(texts[kept], 5))
        assert len(a & b) / len(a | b) >= 0.7, (doc, kept)
    # with the same banding, verification only removes links
    plain = deduplicate(table, method="minhash", bands=14, rows=9)
    same_bands = deduplicate(table, method="minhash", verify=True, bands=14, rows=9)
    assert set(same_bands.column("id").to_pylist()) <= set(plain.column("id").to_pylist())
    assert Dedup(DedupParams(verify=True)).banding == (20, 6)


def test_exact_and_url_keys():
    table = pa.table(
        {
            "id": ["a", "b", "c", "d", "e"],
            "text": pa.array(
                ["Hello  World 2024!", "hello world 1999", "Other text", "", "other TEXT."], pa.large_string()
            ),
            "url": [
                "http://www.x.org/p/",
                "https://x.org/p",
                None,
                "https://y.org/q?b=1&a=2",
                "http://y.org/q?a=2&b=1#f",
            ],
        }
    )
    ex = deduplicate(table, method="exact")
    assert dict(zip(ex.column("id").to_pylist(), ex.column("reason").to_pylist())) == {
        "a": None,
        "b": "exact_duplicate",
        "c": None,
        "e": "exact_duplicate",
    }
    url = deduplicate(table, method="url")
    assert dict(zip(url.column("id").to_pylist(), url.column("url_cluster").to_pylist())) == {
        "a": "a",
        "b": "a",
        "d": "d",
        "e": "d",
    }


def test_verdict_and_stats():
    table = sms_table()
    stage = Dedup(DedupParams(method="minhash"))
    sigs = pa.Table.from_batches([stage.signatures(b) for b in table.to_batches(100)])
    resolution = stage.resolve_local(sigs)
    batch = table.combine_chunks().to_batches()[0]
    kept, stats = apply_verdict(stage, batch, stage.verdict(batch, resolution))
    dropped = resolution.column("reason").drop_null()
    assert stats.docs_dropped == len(dropped) == stats.dropped_by_reason["near_duplicate"]
    assert stats.balanced() and kept.num_rows == table.num_rows - len(dropped)
    assert "minhash_cluster" in kept.schema.names
    info = stage.resolution_stats(resolution)
    assert info["extra"]["duplicates"] == len(dropped)
    assert info["extra"]["clusters"] == len(resolution.column("reason")) - len(dropped)
    assert sum(info["histograms"]["cluster_size"]["counts"]) == info["extra"]["clusters"]
    top = info["examples"][0]
    assert top["size"] == info["extra"]["largest_cluster"] and top["members"][0] == top["kept"]
    assert resolution_stats(resolution, "minhash_cluster") == info


def test_bad_input_does_not_crash():
    table = pa.table({"id": ["x", "y", "z"], "text": pa.array([None, "", "!!! ???"], pa.large_string())})
    stage = Dedup(DedupParams())
    sigs = stage.signatures(table.to_batches()[0])
    assert sigs.column("keys").null_count == 3
    assert stage.resolve_local(pa.Table.from_batches([sigs])).num_rows == 0
    # invalid UTF-8 (Parquet does not guarantee it) is hashed with replacement characters
    raw = pa.Array.from_buffers(
        pa.large_string(),
        2,
        [None, pa.py_buffer(np.array([0, 9, 20], np.int64).tobytes()), pa.py_buffer(b"caf\xff\xfe bar pile of words")],
    )
    hashes, offsets = text.shingle_hashes(raw, 2)
    assert offsets.tolist() == [0, 1, 3] and len(hashes) == 3


def test_params_checked():
    with pytest.raises(ValueError):
        DedupParams(bands=20, rows=10)
    with pytest.raises(ValueError):
        DedupParams(method="fuzzy")
    assert Dedup(DedupParams(method="url")).added_columns() == {"url_cluster": pa.string()}


def _groups(res: pa.Table, column: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for doc, cluster in zip(res.column("id").to_pylist(), res.column(column).to_pylist()):
        out.setdefault(cluster, []).append(doc)
    return out
