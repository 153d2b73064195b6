"""Batches for the train loop: the shard loader (`refinery.loaders.TokenDataset`) batched and
cycled over epochs, and a fixed held-out set for validation loss."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from refinery.loaders.dataset import TokenDataset, collate_windows
from refinery.loaders.mixture import MixtureDataset
from refinery.trainer.config import DataConfig


class Batches:
    """Endless batches from a TokenDataset; its `state_dict()` is exact between batches.

    The dataset is iterated in this process (no DataLoader workers), so its own counters say
    which windows the batches handed out so far consumed; an epoch's last partial batch is
    dropped so every step sees the same shape on every rank."""

    def __init__(self, dataset: TokenDataset, batch_size: int):
        if dataset.windows_per_epoch() // dataset.world_size < batch_size:
            raise ValueError(
                f"the shards hold {dataset.windows_per_epoch()} windows of {dataset.seq_len} tokens; "
                f"one batch of {batch_size} on each of {dataset.world_size} ranks needs more"
            )
        self.dataset = dataset
        self.loader = DataLoader(
            dataset, batch_size=batch_size, collate_fn=collate_windows, num_workers=0, drop_last=True
        )
        self._it = None

    def __next__(self) -> dict:
        for _ in range(2):
            if self._it is None:
                self._it = iter(self.loader)
            try:
                return next(self._it)
            except StopIteration:
                self._it = None
        raise RuntimeError("the loader produced an empty epoch")

    def state_dict(self) -> dict:
        return self.dataset.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self._it = None
        self.dataset.load_state_dict(state)


def open_dataset(
    path: str, seq_len: int, *, seed: int, shuffle: bool, rank: int, world_size: int, document_masking: bool
) -> TokenDataset:
    return TokenDataset(
        path, seq_len, seed=seed, shuffle=shuffle, rank=rank, world_size=world_size, document_masking=document_masking
    )


def open_training_data(
    cfg: DataConfig, data: str | None, *, rank: int, world_size: int
) -> TokenDataset | MixtureDataset:
    """The training stream: the mixture of `data.sources`, or the one folder `data` (--data)."""
    if cfg.sources:
        return MixtureDataset(
            [(s.path, s.weight) for s in cfg.sources],
            cfg.seq_len,
            seed=cfg.seed,
            shuffle=cfg.shuffle,
            rank=rank,
            world_size=world_size,
            document_masking=cfg.document_masking,
        )
    if data is None:
        raise ValueError("no training data: give --data SHARDS or data.sources in the config")
    return open_dataset(
        data,
        cfg.seq_len,
        seed=cfg.seed,
        shuffle=cfg.shuffle,
        rank=rank,
        world_size=world_size,
        document_masking=cfg.document_masking,
    )


def source_names(cfg: DataConfig) -> list[str]:
    return [s.name or (s.path.rstrip("/").rsplit("/", 1)[-1] or s.path) for s in cfg.sources or []]


def vocab_size_of(dataset: TokenDataset | MixtureDataset) -> int:
    """The shards' vocabulary; every source of a mixture must share one tokenizer."""
    sources = dataset.sources if isinstance(dataset, MixtureDataset) else [dataset]
    tokenizers = {s.source.manifest["tokenizer"].get("sha256") for s in sources}
    if len(tokenizers) > 1:
        raise ValueError("the mixture's sources were tokenized with different models")
    return int(sources[0].source.manifest["tokenizer"]["vocab_size"])


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
