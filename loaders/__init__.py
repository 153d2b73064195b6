"""Streaming loaders over token shards (docs/architecture.md, "Trainer side"): `TokenDataset` yields packed,
resumable windows; `TokenLoader` batches them with DataLoader workers and keeps the state."""

from refinery.loaders.dataset import IGNORE_INDEX, TokenDataset, collate_windows
from refinery.loaders.mixture import MixtureDataset
from refinery.loaders.source import ShardCorrupt, ShardSource
from refinery.loaders.stateful import TokenLoader

__all__ = [
    "IGNORE_INDEX",
    "MixtureDataset",
    "ShardCorrupt",
    "ShardSource",
    "TokenDataset",
    "TokenLoader",
    "collate_windows",
]
