"""The train loop's data: the training stream (one shard folder or a mixture), which
`refinery.loaders.TokenLoader` batches, and what the loop needs to know about it."""

from __future__ import annotations

import torch

from refinery.loaders import Batch, MixtureDataset, TokenDataset
from refinery.trainer.config import DataConfig


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
    return TokenDataset(
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


def to_device(batch: Batch, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
