"""Shards read through pyarrow's S3 filesystem from a real S3-compatible server (moto) on
127.0.0.1: same windows as from the local folder, and remote corruption is caught."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pytest
import torch

from refinery.loaders import ShardCorrupt, TokenDataset, TokenLoader
from refinery.tokenize.shards import write_shards
from refinery.tokenize.tokenizer import Tokenizer

pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "tokenizer" / "refinery-demo-8k.model"
DOCS = ROOT / "tests" / "data" / "tokenize" / "docs.jsonl"


@pytest.fixture(scope="module")
def s3_endpoint(s3) -> str:
    return s3.endpoint.removeprefix("http://")


@pytest.fixture(scope="module")
def local_shards(tmp_path_factory) -> Path:
    docs = [json.loads(line) for line in DOCS.read_text().splitlines()]
    tok = Tokenizer(MODEL)
    ids = tok.encode_arrow(pa.array([d["text"] for d in docs]), add_bos=True, add_eos=True)
    batch = pa.RecordBatch.from_arrays([ids, pa.array([d["id"] for d in docs])], names=["input_ids", "id"])
    folder = tmp_path_factory.mktemp("s3src") / "shards"
    write_shards([batch], folder, tok.info(add_bos=True, add_eos=True), shard_bytes=8_000, block_tokens=900)
    return folder


def upload(endpoint: str, bucket: str, folder: Path, prefix: str) -> None:
    client = boto3.client("s3", endpoint_url=f"http://{endpoint}", **{"region_name": "us-east-1"})
    client.create_bucket(Bucket=bucket)
    for path in sorted(folder.iterdir()):
        client.upload_file(str(path), bucket, f"{prefix}/{path.name}")


def test_remote_shards_give_the_local_windows(s3_endpoint, local_shards, tmp_path):
    upload(s3_endpoint, "tokens", local_shards, "run1/shards")
    uri = f"s3://tokens/run1/shards?endpoint_override={s3_endpoint}&scheme=http"
    remote = TokenDataset(uri, 48, seed=4, cache_dir=tmp_path / "cache")
    local = TokenDataset(local_shards, 48, seed=4)
    assert remote.manifest_sha256 == local.manifest_sha256
    got = [x["input_ids"] for x in remote]
    want = [x["input_ids"] for x in local]
    assert len(got) == len(want) > 20 and all(torch.equal(a, b) for a, b in zip(got, want))
    assert sorted(p.name for p in (tmp_path / "cache").rglob("*.arrow")) == sorted(
        p.name for p in local_shards.glob("*.arrow")
    )
    # Resume from the remote folder with DataLoader workers.
    loader = TokenLoader(TokenDataset(uri, 48, seed=4, cache_dir=tmp_path / "cache2"), batch_size=2, num_workers=2)
    loader.load_state_dict({**local.state_dict(), "epoch": 0, "consumed": 6})
    rest = torch.cat([b["input_ids"] for b in loader])
    assert torch.equal(rest, torch.stack(want[6:]))


def test_corrupted_remote_shard_is_rejected(s3_endpoint, local_shards, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(local_shards, broken)
    victim = broken / "shard-000000.arrow"
    data = bytearray(victim.read_bytes())
    data[100] ^= 0x80
    victim.write_bytes(bytes(data))
    upload(s3_endpoint, "broken", broken, "shards")
    ds = TokenDataset(
        f"s3://broken/shards?endpoint_override={s3_endpoint}&scheme=http", 48, shuffle=False, cache_dir=tmp_path / "c"
    )
    with pytest.raises(ShardCorrupt, match="checksum"):
        next(iter(ds))
    assert not list((tmp_path / "c").rglob("shard-000000.arrow"))  # the bad copy is not kept
