"""`TokenLoader`: a torch DataLoader over a `TokenDataset` that knows how far training got.

DataLoader workers hold copies of the dataset, so the dataset in the training process cannot
see what they produced. The loader counts the items it has handed to the trainer instead:
the dataset gives each worker chunks of consecutive items, round-robin, so they arrive in the
rank's global order and "items delivered" is an exact position. `state_dict()` after any
batch resumes, on any number of workers, at the next batch.

A worker sends a chunk of several batches at once (int32 windows, about `TRANSFER_TOKENS`
tokens): each transfer between processes has a fixed cost (a shared-memory segment, a file
descriptor, a queue message), so fewer, larger transfers carry more tokens per second. A chunk
is a whole number of batches, so the batches are the same as without workers.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import DataLoader

from refinery.loaders.dataset import TokenDataset, expand_compact

TRANSFER_TOKENS = 1 << 20
MAX_BATCHES_PER_TRANSFER = 32


class TokenLoader:
    """Batches (as `collate_windows` makes them) from a `TokenDataset`, which it switches to
    batch mode; each `iter()` runs to the end of the current epoch and the next `iter()`
    starts the following one."""

    def __init__(
        self,
        dataset: TokenDataset,
        batch_size: int,
        *,
        num_workers: int = 0,
        pin_memory: bool = False,
        prefetch_factor: int | None = None,
    ):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.dataset = dataset
        self.batch_size = batch_size
        # The dataset now yields whole batches (one per chunk of `batch_size` items).
        dataset.batch_size = dataset.chunk = batch_size
        self.pin_memory = pin_memory
        # Without workers a DataLoader adds nothing but per-batch overhead: iterate directly.
        self.loader = None
        if num_workers:
            # Workers send int32 windows, several batches at a time; they become int64 inputs
            # and labels here. Masked batches carry per-batch cu_seqlens and go one by one.
            if not dataset.document_masking:
                fits = TRANSFER_TOKENS // (batch_size * (dataset.seq_len + 1))
                dataset.batch_size = dataset.chunk = batch_size * max(1, min(MAX_BATCHES_PER_TRANSFER, fits))
            dataset.compact = True
            self.loader = DataLoader(
                dataset,
                batch_size=None,
                num_workers=num_workers,
                prefetch_factor=prefetch_factor,
                persistent_workers=False,
            )

    def _batches(self) -> Iterator[dict]:
        for received in self.loader if self.loader is not None else self.dataset:
            for batch in expand_compact(received, self.batch_size):
                if self.pin_memory:
                    batch = {k: v.pin_memory() if torch.is_tensor(v) else v for k, v in batch.items()}
                yield batch

    def __iter__(self) -> Iterator[dict]:
        ds = self.dataset
        ds._normalize()
        epoch = ds._epoch
        delivered = 0
        for batch in self._batches():
            delivered += batch["input_ids"].shape[0]
            ds._count = delivered
            yield batch
        ds._finish_epoch(epoch)

    def __len__(self) -> int:
        """Batches left in the current epoch on this rank."""
        return -(-max(0, self.dataset._remaining() - self.dataset._count) // self.batch_size)

    def state_dict(self) -> dict:
        return self.dataset.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.dataset.load_state_dict(state)
