"""TokenDataset / TokenLoader: coverage across ranks and workers, exact resumption, packing,
document masking and checksum verification."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pytest
import torch

from refinery.loaders import IGNORE_INDEX, ShardCorrupt, TokenDataset, TokenLoader, collate_windows
from refinery.tokenize.shards import MANIFEST, write_shards
from refinery.tokenize.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "tokenizer" / "refinery-demo-8k.model"
DOCS = ROOT / "tests" / "data" / "tokenize" / "docs.jsonl"
SEQ = 32


def build_shards(folder: Path, *, add_eos: bool) -> Path:
    docs = [json.loads(line) for line in DOCS.read_text().splitlines()]
    tok = Tokenizer(MODEL)
    ids = tok.encode_arrow(pa.array([d["text"] for d in docs]), add_bos=True, add_eos=add_eos)
    batch = pa.RecordBatch.from_arrays([ids, pa.array([d["id"] for d in docs])], names=["input_ids", "id"])
    write_shards([batch], folder, tok.info(add_bos=True, add_eos=add_eos), shard_bytes=6_000, block_tokens=700)
    return folder


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return build_shards(tmp_path_factory.mktemp("shards") / "s", add_eos=True)


@pytest.fixture(scope="module")
def bare_shards(tmp_path_factory) -> Path:
    return build_shards(tmp_path_factory.mktemp("bare") / "s", add_eos=False)


def indices(items) -> list[int]:
    out = []
    for item in items:
        index = item["index"]
        out.extend(index.tolist() if torch.is_tensor(index) else [index])
    return out


def test_manifest_has_many_shards_and_blocks(shards):
    manifest = json.loads((shards / MANIFEST).read_text())
    assert len(manifest["shards"]) >= 4
    assert sum(len(s["blocks"]) for s in manifest["shards"]) >= 15


def test_unshuffled_windows_are_the_document_stream(shards, bare_shards):
    for folder, append in ((shards, False), (bare_shards, True)):
        ds = TokenDataset(folder, SEQ, shuffle=False)
        table = pa.concat_tables(pa.ipc.open_file(p).read_all() for p in sorted(folder.glob("*.arrow")))
        stream = []
        for ids in table.column("input_ids").to_pylist():
            stream.extend(ids + ([2] if append else []))
        items = list(ds)
        assert len(items) == (len(stream) - 1) // SEQ
        for item in items:
            g = item["index"]
            assert item["input_ids"].tolist() == stream[g * SEQ : g * SEQ + SEQ]
            assert item["labels"].tolist() == stream[g * SEQ + 1 : g * SEQ + SEQ + 1]
            assert item["input_ids"].dtype == torch.int64 and item["input_ids"].shape == (SEQ,)


def test_shuffle_is_a_seeded_permutation_of_documents(shards):
    a = TokenDataset(shards, SEQ, seed=3)
    b = TokenDataset(shards, SEQ, seed=3)
    assert [x["input_ids"].tolist() for x in a] == [x["input_ids"].tolist() for x in b]
    epoch0 = torch.cat([x["input_ids"] for x in TokenDataset(shards, SEQ, seed=3)])
    epoch1 = torch.cat([x["input_ids"] for x in a])  # `a` moved on to epoch 1
    other_seed = torch.cat([x["input_ids"] for x in TokenDataset(shards, SEQ, seed=4)])
    plain = torch.cat([x["input_ids"] for x in TokenDataset(shards, SEQ, shuffle=False)])
    assert not torch.equal(epoch0, epoch1) and not torch.equal(epoch0, other_seed)
    # Same multiset of documents: every document appears once per epoch, only the order moves.
    assert (epoch0 == 1).sum() == (plain == 1).sum() == (epoch1 == 1).sum()
    assert abs(len(epoch0) - len(plain)) < 2 * SEQ


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_ranks_cover_every_window_once(shards, world_size):
    total = TokenDataset(shards, SEQ, seed=1).windows_per_epoch()
    seen = []
    for rank in range(world_size):
        ds = TokenDataset(shards, SEQ, seed=1, rank=rank, world_size=world_size)
        got = indices(ds)
        assert len(got) == total // world_size
        seen.extend(got)
    assert sorted(seen) == list(range(total // world_size * world_size))


def test_dataloader_workers_cover_every_window_once_in_rank_order(shards):
    reference = indices(TokenDataset(shards, SEQ, seed=2, rank=1, world_size=2))
    for workers in (0, 2, 3):
        loader = TokenLoader(TokenDataset(shards, SEQ, seed=2, rank=1, world_size=2), batch_size=4, num_workers=workers)
        assert indices(loader) == reference


def test_direct_iteration_resumes_at_item_k_plus_one(shards):
    full = [x["input_ids"] for x in TokenDataset(shards, SEQ, seed=5, rank=1, world_size=2)]
    for k in (0, 1, 7, len(full) - 1):
        ds = TokenDataset(shards, SEQ, seed=5, rank=1, world_size=2)
        it = iter(ds)
        for _ in range(k):
            next(it)
        state = ds.state_dict()
        fresh = TokenDataset(shards, SEQ, seed=5, rank=1, world_size=2)
        fresh.load_state_dict(json.loads(json.dumps(state)))
        rest = [x["input_ids"] for x in fresh]
        assert len(rest) == len(full) - k
        assert all(torch.equal(a, b) for a, b in zip(rest, full[k:]))


def test_resume_with_another_worker_count_and_world_size(shards):
    total = TokenDataset(shards, SEQ, seed=7).windows_per_epoch()
    # Two ranks with two workers each take 3 batches of 4, then stop.
    states = []
    taken = []
    for rank in range(2):
        loader = TokenLoader(TokenDataset(shards, SEQ, seed=7, rank=rank, world_size=2), batch_size=4, num_workers=2)
        it = iter(loader)
        for _ in range(3):
            taken.extend(next(it)["index"].tolist())
        states.append(loader.state_dict())
        del it
    assert states[0]["consumed"] == states[1]["consumed"] == 24
    assert sorted(taken) == list(range(24))
    # Resume on three ranks with three workers: exactly the remaining windows, none twice.
    rest = []
    for rank in range(3):
        loader = TokenLoader(TokenDataset(shards, SEQ, seed=7, rank=rank, world_size=3), batch_size=4, num_workers=3)
        loader.load_state_dict(states[0])
        assert len(loader) == -(-((total - 24) // 3) // 4)
        rest.extend(indices(loader))
        assert loader.state_dict()["epoch"] == 1
    assert sorted(rest) == list(range(24, 24 + (total - 24) // 3 * 3))


def test_loader_resume_continues_the_same_batches(shards):
    def batches(loader, n=None):
        out = []
        for batch in loader:
            out.append(batch["input_ids"])
            if n is not None and len(out) == n:
                break
        return out

    full = batches(TokenLoader(TokenDataset(shards, SEQ, seed=9), batch_size=3, num_workers=2))
    first = TokenLoader(TokenDataset(shards, SEQ, seed=9), batch_size=3, num_workers=2)
    head = batches(first, 5)
    state = first.state_dict()
    assert state["consumed"] == 15 and state["epoch"] == 0
    resumed = TokenLoader(TokenDataset(shards, SEQ, seed=9), batch_size=3, num_workers=0)
    resumed.load_state_dict(state)
    tail = batches(resumed)
    assert len(head) + len(tail) == len(full)
    assert all(torch.equal(a, b) for a, b in zip(head + tail, full))


def test_cycle_drops_partial_batches_and_resumes_between_any_two(bare_shards):
    """What the trainer takes: full batches epoch after epoch, the same as a DataLoader over the
    items with drop_last, and a state after any batch that continues with the next one."""
    from torch.utils.data import DataLoader

    def make():
        return TokenDataset(bare_shards, SEQ, seed=4, world_size=2, document_masking=True)

    per_epoch = make().windows_per_epoch() // 2 // 5
    items = DataLoader(make(), batch_size=5, collate_fn=collate_windows, drop_last=True)
    expected = [batch for _ in range(2) for batch in items]
    assert len(expected) == 2 * per_epoch and make().items_left() % 5  # an epoch ends in a partial batch
    loader = TokenLoader(make(), batch_size=5, drop_last=True)
    assert len(loader) == per_epoch
    cycle = loader.cycle()
    got, states = [], []
    for _ in range(len(expected)):
        got.append(next(cycle))
        states.append(loader.state_dict())
    for a, b in zip(got, expected):
        assert a.keys() == b.keys() and a["max_seqlen"] == b["max_seqlen"]
        assert all(torch.equal(a[k], b[k]) for k in a if k != "max_seqlen")
    assert states[per_epoch - 1]["epoch"] == 0 and states[per_epoch]["epoch"] == 1
    for k in (0, per_epoch - 1, per_epoch + 2):
        resumed = TokenLoader(make(), batch_size=5, drop_last=True)
        resumed.load_state_dict(states[k])
        assert torch.equal(next(resumed.cycle())["input_ids"], got[k + 1]["input_ids"])


def test_too_few_windows_for_one_full_batch_is_refused(shards):
    total = TokenDataset(shards, SEQ).windows_per_epoch()
    with pytest.raises(ValueError, match=f"the shards hold {total} windows"):
        TokenLoader(TokenDataset(shards, SEQ), batch_size=total + 1, drop_last=True)


def test_loader_batches_a_mixture_and_keeps_its_state(shards, bare_shards):
    from refinery.loaders import MixtureDataset

    def make():
        return MixtureDataset([(shards, 0.6), (bare_shards, 0.4)], SEQ, seed=2)

    items = iter(make())
    loader = TokenLoader(make(), batch_size=4, drop_last=True)
    batches = loader.cycle()
    for _ in range(3):
        expected = collate_windows([next(items) for _ in range(4)])
        batch = next(batches)
        assert all(torch.equal(batch[k], expected[k]) for k in ("input_ids", "labels", "index", "source"))
    assert loader.state_dict()["position"] == 12
    with pytest.raises(ValueError, match="num_workers"):
        TokenLoader(make(), batch_size=4, num_workers=2)
    with pytest.raises(ValueError, match="not a mixture's"):
        loader.load_state_dict(TokenDataset(shards, SEQ).state_dict())


def test_epochs_advance_and_end_of_epoch_state_starts_the_next(shards):
    ds = TokenDataset(shards, SEQ, seed=1, world_size=2)
    n = len(list(ds))
    assert ds.state_dict()["epoch"] == 1 and ds.state_dict()["consumed"] == 0
    second = [x["input_ids"] for x in ds]
    assert len(second) == n and ds.state_dict()["epoch"] == 2
    ds = TokenDataset(shards, SEQ, seed=1, world_size=2)
    it = iter(ds)
    for _ in range(n):
        next(it)
    fresh = TokenDataset(shards, SEQ, seed=1, world_size=2)
    fresh.load_state_dict(ds.state_dict())
    assert all(torch.equal(a["input_ids"], b) for a, b in zip(fresh, second))


def test_state_from_another_dataset_is_refused(shards):
    state = TokenDataset(shards, SEQ, seed=1).state_dict()
    with pytest.raises(ValueError, match="seed"):
        TokenDataset(shards, SEQ, seed=2).load_state_dict(state)
    with pytest.raises(ValueError, match="seq_len"):
        TokenDataset(shards, SEQ * 2, seed=1).load_state_dict(state)


def test_document_masking_marks_boundaries(bare_shards):
    ds = TokenDataset(bare_shards, SEQ, seed=1, document_masking=True)
    items = list(ds)
    crossing = 0
    for item in items:
        ids, labels, pos, cu = item["input_ids"], item["labels"], item["position_ids"], item["cu_seqlens"]
        window = torch.cat([ids, labels[-1:]]) if labels[-1] != IGNORE_INDEX else None
        assert cu[0] == 0 and cu[-1] == SEQ and torch.all(cu[1:] > cu[:-1])
        for start in cu[1:-1].tolist():
            crossing += 1
            assert ids[start] == 1  # every document begins with BOS
            assert ids[start - 1] == 2  # and follows the previous one's EOS
            assert labels[start - 1] == IGNORE_INDEX and pos[start] == 0
        lengths = (cu[1:] - cu[:-1]).tolist()
        assert pos.tolist() == [i for n in lengths for i in range(n)]
        masked = (labels == IGNORE_INDEX).nonzero().flatten().tolist()
        assert all(ids[i] == 2 for i in masked)
        if window is not None:
            assert torch.equal(labels[:-1][labels[:-1] != IGNORE_INDEX], ids[1:][labels[:-1] != IGNORE_INDEX])
    assert crossing > 50
    batch = collate_windows(items[:3])
    assert batch["input_ids"].shape == (3, SEQ) and batch["position_ids"].shape == (3, SEQ)
    cu = batch["cu_seqlens"]
    assert cu[0] == 0 and cu[-1] == 3 * SEQ and torch.all(cu[1:] > cu[:-1])
    assert batch["max_seqlen"] == int((cu[1:] - cu[:-1]).max())


def test_flipped_byte_is_detected_before_use(shards, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(shards, broken)
    manifest = json.loads((broken / MANIFEST).read_text())
    victim = broken / "shard-000002.arrow"
    _, _, offset, length, _ = manifest["shards"][2]["blocks"][1]
    data = bytearray(victim.read_bytes())
    data[offset + length // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    # Stream position (unshuffled) where the corrupted block begins.
    bad_start = sum(s["tokens"] for s in manifest["shards"][:2]) + manifest["shards"][2]["blocks"][0][1]
    ds = TokenDataset(broken, SEQ, shuffle=False)
    served = []
    with pytest.raises(ShardCorrupt, match=r"shard-000002.arrow: block 1 checksum"):
        for item in ds:
            served.append(item["index"])
    assert served and max(served) * SEQ + SEQ + 1 <= bad_start
    assert max(served) >= (bad_start - 1) // SEQ - 64  # data up to the bad block was served


def test_corrupted_footer_is_detected_when_opening(shards, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(shards, broken)
    victim = broken / "shard-000000.arrow"
    data = bytearray(victim.read_bytes())
    data[-20] ^= 0x04
    victim.write_bytes(bytes(data))
    with pytest.raises(ShardCorrupt, match="schema or footer"):
        next(iter(TokenDataset(broken, SEQ, shuffle=False)))
