"""Streaming loaders over token shards (docs/architecture.md, "Trainer side"): `TokenDataset` yields packed,
resumable windows; `MixtureDataset` draws them from several folders; `TokenLoader` batches
either, with DataLoader workers, and keeps the state."""

from refinery.loaders.dataset import IGNORE_INDEX, Batch, TokenDataset, Window, collate_windows
from refinery.loaders.mixture import MixtureDataset
from refinery.loaders.source import ShardCorrupt, ShardSource
from refinery.loaders.stateful import TokenLoader

__all__ = [
    "IGNORE_INDEX",
    "Batch",
    "MixtureDataset",
    "ShardCorrupt",
    "ShardSource",
    "TokenDataset",
    "TokenLoader",
    "Window",
    "collate_windows",
]
