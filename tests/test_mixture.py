"""Weighted mixtures of shard folders: proportions by tokens, deterministic, exact resume mid-epoch
and on another number of ranks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from test_trainer_loop import HELD_OUT, make_shards

from refinery.loaders import MixtureDataset
from refinery.loaders.dataset import collate_windows


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mixture")
    return str(make_shards(tmp / "a")), str(make_shards(tmp / "b", HELD_OUT))


def mixture(folders, **kw) -> MixtureDataset:
    return MixtureDataset([(folders[0], 0.7), (folders[1], 0.3)], 16, seed=3, **kw)


def take(dataset, n: int) -> list[dict]:
    return list(itertools.islice(iter(dataset), n))


def test_proportions_by_tokens_over_10k_windows(folders):
    data = mixture(folders)
    items = take(data, 10_000)
    share = np.bincount([x["source"] for x in items], minlength=2) / len(items)
    assert abs(share[0] - 0.7) < 0.01 and abs(share[1] - 0.3) < 0.01
    tokens = [sum(x["input_ids"].numel() for x in items if x["source"] == s) for s in (0, 1)]
    assert abs(tokens[0] / sum(tokens) - 0.7) < 0.01
    # the smaller source cycled through several epochs of its own order
    assert max(x["index"] for x in items) == 9_999 and data.sources[1].windows_per_epoch(0) < 3_000
    batch = collate_windows(items[:4])
    assert batch["source"].tolist() == [x["source"] for x in items[:4]]


def test_deterministic_from_the_seed(folders):
    one, two = take(mixture(folders), 50), take(mixture(folders), 50)
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(one, two))
    other = take(MixtureDataset([(folders[0], 0.7), (folders[1], 0.3)], 16, seed=4), 50)
    assert any(not torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(one, other))


def test_resume_mid_epoch_and_on_other_ranks(folders):
    whole = take(mixture(folders), 700)
    first = mixture(folders)
    take(first, 300)
    again = mixture(folders)
    again.load_state_dict(first.state_dict())
    assert [x["index"] for x in take(again, 100)] == list(range(300, 400))
    resumed = mixture(folders)
    resumed.load_state_dict(first.state_dict())
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(take(resumed, 100), whole[300:400]))

    # two ranks take 150 each (positions 0..299 between them); one rank goes on from there
    ranks = [mixture(folders, rank=r, world_size=2) for r in (0, 1)]
    shares = [take(d, 150) for d in ranks]
    assert [x["index"] for x in shares[1][:3]] == [1, 3, 5]
    assert ranks[0].state_dict() == ranks[1].state_dict() == first.state_dict()
    alone = mixture(folders)
    alone.load_state_dict(ranks[1].state_dict())
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(take(alone, 400), whole[300:700]))
    # and on to three ranks
    three = [mixture(folders, rank=r, world_size=3) for r in range(3)]
    for d in three:
        d.load_state_dict(ranks[0].state_dict())
    assert [x["index"] for x in take(three[2], 3)] == [302, 305, 308]


def test_state_from_another_mixture_is_refused(folders):
    state = mixture(folders).state_dict()
    with pytest.raises(ValueError, match="weights"):
        MixtureDataset([(folders[0], 0.5), (folders[1], 0.5)], 16, seed=3).load_state_dict(state)
    with pytest.raises(ValueError, match="positive"):
        MixtureDataset([(folders[0], 1.0), (folders[1], 0.0)], 16)


def test_training_on_a_mixture_logs_tokens_per_source_and_resumes(folders, tmp_path, one_thread):
    import json

    from test_trainer_loop import tiny_config

    from refinery.trainer.config import load_train_config
    from refinery.trainer.loop import train

    sources = [{"path": folders[0], "weight": 0.7, "name": "web"}, {"path": folders[1], "weight": 0.3, "name": "books"}]
    conf = load_train_config(
        tiny_config(tmp_path, **{"data.sources": sources, "checkpoint.every": 3, "checkpoint.asynchronous": False})
    )
    train(conf, None, tmp_path / "whole", max_steps=6)
    records = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    last = records[-1]
    assert last["tokens/web"] + last["tokens/books"] == last["tokens"] == 6 * 8 * 64
    assert abs(last["tokens/web"] / last["tokens"] - 0.7) < 0.03
    train(conf, None, tmp_path / "split", max_steps=3)
    train(conf, None, tmp_path / "split", max_steps=6, resume=True)
    split = [json.loads(line) for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in split] == [r["loss"] for r in records]
