"""Tokenizer training and loading, the `tokenize` stage, and the shard writer."""

from __future__ import annotations

import hashlib
import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import xxhash

from refinery.pipeline import cli
from refinery.pipeline.config import ConfigError, validate
from refinery.pipeline.rundir import RunDir
from refinery.pipeline.stage import run_map_stage
from refinery.stages.tokenize_stage import Tokenize, TokenizeParams
from refinery.tokenize.shards import MANIFEST, write_shards
from refinery.tokenize.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "tokenizer" / "refinery-demo-8k.model"
DOCS = ROOT / "tests" / "data" / "tokenize" / "docs.jsonl"


def load_docs() -> list[dict]:
    return [json.loads(line) for line in DOCS.read_text().splitlines()]


def doc_batch(docs: list[dict]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist(
        [{"id": d["id"], "text": d["text"], "url": None, "source": d["source"]} for d in docs],
        schema=pa.schema(
            [("id", pa.string()), ("text", pa.large_string()), ("url", pa.string()), ("source", pa.string())]
        ),
    )


def make_stage(**params) -> Tokenize:
    stage = Tokenize(TokenizeParams(tokenizer=str(MODEL), **params))
    stage.setup()
    return stage


def test_tokenize_package_never_shadows_stdlib():
    assert not (ROOT / "tokenize" / "__init__.py").exists()
    stdlib = importlib.import_module("tokenize")
    assert hasattr(stdlib, "generate_tokens")
    assert Path(stdlib.__file__).parent == Path(importlib.import_module("inspect").__file__).parent
    assert "refinery.tokenize.tokenizer" in sys.modules


def test_shipped_model_is_internlm2_style_and_round_trips():
    tok = Tokenizer(MODEL)
    assert (tok.vocab_size, tok.unk_id, tok.bos_id, tok.eos_id) == (8000, 0, 1, 2)
    assert tok.sp.id_to_piece(3) == "<0x00>"  # byte fallback
    assert MODEL.stat().st_size < 1 << 20
    texts = [d["text"] for d in load_docs()] + ["Budget 2024: $1,234,567.89\n\n    def f(x):\treturn x ** 2  "]
    ids = tok.encode(texts)
    assert [tok.decode(x) for x in ids] == texts
    digits = tok.sp.encode("1234567", out_type=str)
    assert all(len(p.strip("▁")) <= 1 for p in digits)  # digits are split one by one
    chinese = next(d["text"] for d in load_docs() if "cmn_hans" in d["id"])
    assert tok.encode([chinese])[0].min() < 259 and tok.unk_id not in tok.encode([chinese])[0]


def test_long_texts_are_encoded_in_pieces_with_the_ids_of_the_whole(monkeypatch):
    """A long text is cut before spaces that follow a non-space (runs of spaces, tabs and
    newlines in between); the ids equal one whole encoding, BOS/EOS once per text."""
    from refinery.tokenize import tokenizer

    tok = Tokenizer(MODEL)
    assert tok.splits_at_spaces
    seps = [" ", "  ", "\n", "\n\n", " \n ", "\t", "   \t ", "  \n"]
    texts = [d["text"] for d in load_docs()]
    long_text = "".join(t + seps[i % len(seps)] for i, t in enumerate(texts * 3)) + "   "
    whole = tok.sp.encode([long_text, "short"], add_bos=True, add_eos=True, out_type="numpy")
    monkeypatch.setattr(tokenizer, "PIECE_CHARS", 500)
    assert len(list(tokenizer._pieces(long_text, 500))) > 10
    got = tok.encode([long_text, "short"], add_bos=True, add_eos=True)
    assert all(np.array_equal(a, b) for a, b in zip(got, whole))


def test_train_cli_from_config(tmp_path, capsys):
    config = tmp_path / "conf" / "tok.yaml"
    config.parent.mkdir()
    (tmp_path / "docs.jsonl").write_text(DOCS.read_text())
    config.write_text("inputs: [../docs.jsonl]\noutput: ../out/tok.model\nvocab_size: 600\n")
    assert cli.main(["tokenizer", "train", "--config", str(config)]) == 0
    model = tmp_path / "out" / "tok.model"
    info = json.loads(capsys.readouterr().out)
    assert info["vocab_size"] == 600 and info["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    tok = Tokenizer(model)
    text = load_docs()[3]["text"]
    assert tok.decode(tok.encode([text])[0]) == text
    assert cli.main(["tokenizer", "train", "--config", str(config), "--output", str(tmp_path / "again.model")]) == 0
    assert (tmp_path / "again.model").read_bytes() == model.read_bytes()  # training is deterministic


def test_train_cli_reports_missing_input(tmp_path, capsys):
    code = cli.main(
        ["tokenizer", "train", "--input", str(tmp_path / "nope.txt"), "--output", str(tmp_path / "x.model")]
    )
    assert code == 2 and "nope.txt" in capsys.readouterr().err


def test_stage_adds_ids_with_bos_eos_and_counts_bad_rows():
    docs = load_docs()[:20]
    batch = doc_batch(docs + [{"id": "empty", "text": "", "source": "t"}])
    nulls = pa.array([d["text"] for d in docs] + [None], type=pa.large_string())
    stage = make_stage()
    kept, stats = run_map_stage(stage, batch)
    assert stats.docs_in == 21 and stats.docs_kept == 20 and stats.dropped_by_reason == {"too_few_tokens": 1}
    ids = kept.column("input_ids").to_pylist()
    assert all(x[0] == 1 and x[-1] == 2 for x in ids)
    assert kept.column("n_tokens").to_pylist() == [len(x) for x in ids]
    assert stage.tokenizer.decode(ids[5][1:-1]) == docs[5]["text"]
    _, stats = run_map_stage(stage, batch.set_column(1, "text", nulls))
    assert stats.errors_by_kind == {"null_text": 1} and stats.docs_kept == 20
    assert stats.docs_in == stats.docs_kept + stats.docs_dropped + stats.docs_errored

    bare = make_stage(add_bos=False, add_eos=False, min_tokens=0)
    kept, _ = run_map_stage(bare, batch)
    assert kept.num_rows == 21 and kept.column("input_ids").to_pylist()[0] == ids[0][1:-1]


def test_stage_config_resolves_model_path(tmp_path, monkeypatch):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "tok.model").write_bytes(MODEL.read_bytes())
    (tmp_path / "in.jsonl").write_text(DOCS.read_text())
    job = validate(
        {
            "input": {"paths": ["../in.jsonl"], "format": "jsonl"},
            "stages": [{"stage": "tokenize", "tokenizer": "tok.model"}],
        },
        "job.yaml",
        conf,
    )
    assert Path(job.stages[0].params.tokenizer) == (conf / "tok.model").resolve()
    monkeypatch.chdir(ROOT)
    job = validate(
        {
            "input": {"paths": [str(DOCS)], "format": "jsonl"},
            "stages": [{"stage": "tokenize", "tokenizer": "models/tokenizer/refinery-demo-8k.model"}],
        },
        "job.yaml",
        conf,
    )
    assert Path(job.stages[0].params.tokenizer) == MODEL
    with pytest.raises(ConfigError, match=r"stages\[0\].*no model file"):
        validate(
            {
                "input": {"paths": [str(DOCS)], "format": "jsonl"},
                "stages": [{"stage": "tokenize", "tokenizer": "missing.model"}],
            },
            "job.yaml",
            conf,
        )


def finalize_run(root: Path, parts: list[pa.RecordBatch], order=None, **params) -> Path:
    """Each part's shards written as a worker does (`write_part`), then the manifests merged;
    returns the shard folder."""
    run, stage = RunDir(root), make_stage(**params)
    for i in order or range(len(parts)):
        stage.write_part(run, i, 0, parts[i])
    stage.finalize(run)
    return Path(run.path(run.shards))


@pytest.fixture(scope="module")
def tokenized() -> pa.RecordBatch:
    kept, _ = run_map_stage(make_stage(), doc_batch(load_docs()))
    return kept


def test_finalize_writes_verified_deterministic_shards(tmp_path, tokenized):
    parts = [tokenized.slice(0, 70), tokenized.slice(70)]
    shards = finalize_run(tmp_path / "a", parts, shard_bytes=16_000, block_tokens=1_500)
    manifest = json.loads((shards / MANIFEST).read_text())
    assert manifest["format"] == "refinery-token-shards" and manifest["version"] == 1
    assert manifest["tokenizer"]["sha256"] == hashlib.sha256(MODEL.read_bytes()).hexdigest()
    assert (manifest["tokenizer"]["vocab_size"], manifest["tokenizer"]["bos_id"], manifest["tokenizer"]["eos_id"]) == (
        8000,
        1,
        2,
    )
    assert len(manifest["shards"]) > 2
    assert [s["path"][:20] for s in manifest["shards"]] == sorted(s["path"][:20] for s in manifest["shards"])
    assert {s["path"][:19] for s in manifest["shards"]} == {"shard-000000-000000", "shard-000001-000000"}
    assert manifest["documents"] == tokenized.num_rows
    assert manifest["tokens"] == sum(tokenized.column("n_tokens").to_pylist())
    for entry in manifest["shards"]:
        data = (shards / entry["path"]).read_bytes()
        assert entry["bytes"] == len(data) and entry["checksum"] == "sha256:" + hashlib.sha256(data).hexdigest()
        reader = pa.ipc.open_file(shards / entry["path"])
        batches = [reader.get_batch(i) for i in range(reader.num_record_batches)]
        assert [[b.num_rows, len(b.column(0).values)] for b in batches] == [blk[:2] for blk in entry["blocks"]]
        assert all(blk[1] >= 1500 for blk in entry["blocks"][:-1])
        for _docs, _tokens, offset, length, digest in entry["blocks"]:
            assert xxhash.xxh3_128_hexdigest(data[offset : offset + length]) == digest
        head, tail = entry["blocks"][0][2], entry["blocks"][-1][2] + entry["blocks"][-1][3]
        assert xxhash.xxh3_128_hexdigest(data[:head] + data[tail:]) == entry["meta_xxh3_128"]
    # Parts written in another order (as workers finish) give the same bytes.
    other = finalize_run(tmp_path / "b", parts, order=[1, 0], shard_bytes=16_000, block_tokens=1_500)
    names = sorted(p.name for p in shards.iterdir())
    assert names == sorted(p.name for p in other.iterdir())
    assert all((shards / n).read_bytes() == (other / n).read_bytes() for n in names)
    # Finalizing again changes nothing and leaves no temporary files behind.
    make_stage(shard_bytes=16_000, block_tokens=1_500).finalize(RunDir(tmp_path / "a"))
    assert (shards / MANIFEST).read_bytes() == (other / MANIFEST).read_bytes()
    assert not [p for p in (tmp_path / "a").rglob(".*")]


def test_shards_decode_to_the_documents_text(tmp_path, tokenized):
    shards = finalize_run(tmp_path, [tokenized], shard_bytes=30_000, block_tokens=4_000)
    tok = Tokenizer(MODEL)
    manifest = json.loads((shards / MANIFEST).read_text())
    table = pa.concat_tables(pa.ipc.open_file(shards / s["path"]).read_all() for s in manifest["shards"])
    assert table.column("doc_id").to_pylist() == tokenized.column("id").to_pylist()
    texts = dict(zip(tokenized.column("id").to_pylist(), tokenized.column("text").to_pylist()))
    for doc_id, ids in zip(table.column("doc_id").to_pylist(), table.column("input_ids").to_pylist()):
        assert ids[0] == 1 and ids[-1] == 2
        assert tok.decode(ids[1:-1]) == texts[doc_id]


def test_shards_open_with_hugging_face_datasets(tmp_path, tokenized):
    datasets = pytest.importorskip("datasets")
    shards = finalize_run(tmp_path, [tokenized], shard_bytes=30_000, block_tokens=4_000)
    files = sorted(str(p) for p in shards.glob("*.arrow"))
    ds = datasets.load_dataset("arrow", data_files=files, split="train", cache_dir=str(tmp_path / "hf"))
    assert ds.num_rows == tokenized.num_rows
    assert ds[7]["input_ids"] == tokenized.column("input_ids")[7].as_py()
    assert ds[7]["doc_id"] == tokenized.column("id")[7].as_py()


def test_writer_skips_null_token_lists_and_handles_long_documents(tmp_path):
    ids = pa.array([list(range(10)), None, list(range(5000)), [], [7]], type=pa.list_(pa.int32()))
    batch = pa.RecordBatch.from_arrays([ids, pa.array(["a", "b", "c", "d", "e"])], names=["input_ids", "id"])
    manifest = write_shards([batch], tmp_path / "s", {"kind": "test"}, block_tokens=100)
    assert manifest["skipped_documents"] == 1 and manifest["documents"] == 4 and manifest["tokens"] == 5011
    assert [b[:2] for b in manifest["shards"][0]["blocks"]] == [[2, 5010], [2, 1]]
    table = pa.ipc.open_file(tmp_path / "s" / "shard-000000.arrow").read_all()
    assert table.column("doc_id").to_pylist() == ["a", "c", "d", "e"]
    assert np.array_equal(table.column("input_ids")[1].values.to_numpy(), np.arange(5000))
