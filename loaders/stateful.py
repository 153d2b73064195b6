"""`TokenLoader`: batches of a `TokenDataset` or a `MixtureDataset` that know how far training got.

DataLoader workers hold copies of the dataset, so the dataset in the training process cannot
see what they produced. The loader counts the items it has handed to the trainer instead, and
tells the dataset (`set_taken`): the dataset gives each worker chunks of consecutive items,
round-robin, so they arrive in the rank's global order and "items delivered" is an exact
position. `state_dict()` after any batch resumes, on any number of workers, at the next batch.

A worker sends a chunk of several batches at once (int32 windows, about `TRANSFER_TOKENS`
tokens): each transfer between processes has a fixed cost (a shared-memory segment, a file
descriptor, a queue message), so fewer, larger transfers carry more tokens per second. A chunk
is a whole number of batches, so the batches are the same as without workers.

A mixture is read in this process (its windows come by random access from all its sources), and
counts what it hands out itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice

from torch.utils.data import DataLoader, IterableDataset

from refinery.loaders.dataset import Batch, CompactBatch, TokenDataset, TokenState, collate_windows, expand_compact
from refinery.loaders.mixture import MixtureDataset, MixtureState

TRANSFER_TOKENS = 1 << 20
MAX_BATCHES_PER_TRANSFER = 32


class _Batches(IterableDataset[Batch | CompactBatch]):
    """A dataset's batches, for DataLoader workers (each iterates its own copy)."""

    def __init__(self, dataset: TokenDataset):
        self.dataset = dataset

    def __iter__(self) -> Iterator[Batch | CompactBatch]:
        return self.dataset.batches()


class TokenLoader:
    """Batches (as `collate_windows` makes them) of a `TokenDataset`, which it switches to batch
    mode, or of a `MixtureDataset`. Each `iter()` runs to the end of the current epoch (a
    mixture's never ends) and the next `iter()` starts the following one; `cycle()` goes on
    over epochs. With `drop_last` an epoch's last, partial batch is left out, so that every
    batch has `batch_size` windows."""

    def __init__(
        self,
        dataset: TokenDataset | MixtureDataset,
        batch_size: int,
        *,
        num_workers: int = 0,
        pin_memory: bool = False,
        prefetch_factor: int | None = None,
        drop_last: bool = False,
    ):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if drop_last and dataset.windows_per_epoch() // dataset.world_size < batch_size:
            raise ValueError(
                f"the shards hold {dataset.windows_per_epoch()} windows of {dataset.seq_len} tokens; "
                f"one batch of {batch_size} on each of {dataset.world_size} ranks needs more"
            )
        self.dataset = dataset
        self.batch_size = batch_size
        self.pin_memory = pin_memory
        self.drop_last = drop_last
        # Without workers a DataLoader adds nothing but per-batch overhead: iterate directly.
        self.loader: DataLoader[Batch | CompactBatch] | None = None
        if isinstance(dataset, MixtureDataset):
            if num_workers:
                raise ValueError("a mixture is read in this process: num_workers must be 0")
            return
        dataset.set_batching(batch_size)
        if num_workers:
            # Workers send int32 windows, several batches at a time; they become int64 inputs
            # and labels here. Masked batches carry per-batch cu_seqlens and go one by one.
            per_transfer = batch_size
            if not dataset.document_masking:
                fits = TRANSFER_TOKENS // (batch_size * (dataset.seq_len + 1))
                per_transfer = batch_size * max(1, min(MAX_BATCHES_PER_TRANSFER, fits))
            dataset.set_batching(per_transfer, compact=True)
            self.loader = DataLoader(
                _Batches(dataset),
                batch_size=None,
                num_workers=num_workers,
                prefetch_factor=prefetch_factor,
                persistent_workers=False,
            )

    def _received(self) -> Iterable[Batch | CompactBatch]:
        if isinstance(self.dataset, MixtureDataset):
            return self._collated(self.dataset)
        return self.loader if self.loader is not None else self.dataset.batches()

    def _collated(self, mixture: MixtureDataset) -> Iterator[Batch]:
        items = iter(mixture)
        while True:
            yield collate_windows(list(islice(items, self.batch_size)))

    def _batches(self) -> Iterator[Batch]:
        for received in self._received():
            for batch in expand_compact(received, self.batch_size):
                if self.drop_last and batch["input_ids"].shape[0] < self.batch_size:
                    continue
                yield _pinned(batch) if self.pin_memory else batch

    def __iter__(self) -> Iterator[Batch]:
        dataset = self.dataset
        if isinstance(dataset, MixtureDataset):
            return self._batches()
        return self._counted(dataset)

    def _counted(self, dataset: TokenDataset) -> Iterator[Batch]:
        epoch = dataset.begin_pass()
        delivered = 0
        for batch in self._batches():
            delivered += batch["input_ids"].shape[0]
            dataset.set_taken(delivered)
            yield batch
        dataset.end_pass(epoch)

    def cycle(self) -> Iterator[Batch]:
        """Batches without end, epoch after epoch. One pass may be empty: resumed after an
        epoch's last full batch, the rest of that epoch is a dropped partial batch."""
        empty = 0
        while empty < 2:
            empty += 1
            for batch in self:
                empty = 0
                yield batch
        raise RuntimeError("the loader produced an empty epoch")

    def __len__(self) -> int:
        """Batches left in the current epoch on this rank."""
        if isinstance(self.dataset, MixtureDataset):
            raise TypeError("a mixture's batches have no end")
        left = self.dataset.items_left()
        return left // self.batch_size if self.drop_last else -(-left // self.batch_size)

    def state_dict(self) -> TokenState | MixtureState:
        return self.dataset.state_dict()

    def load_state_dict(self, state: TokenState | MixtureState) -> None:
        if isinstance(self.dataset, MixtureDataset):
            if "position" not in state:
                raise ValueError("the loader state is a single dataset's, not a mixture's")
            self.dataset.load_state_dict(state)
        else:
            if "position" in state:
                raise ValueError("the loader state is a mixture's, not a single dataset's")
            self.dataset.load_state_dict(state)


def _pinned(batch: Batch) -> Batch:
    """The batch with its tensors in page-locked memory (faster, asynchronous copies to a GPU)."""
    pinned = batch.copy()
    pinned["input_ids"] = batch["input_ids"].pin_memory()
    pinned["labels"] = batch["labels"].pin_memory()
    pinned["index"] = batch["index"].pin_memory()
    if "position_ids" in batch:
        pinned["position_ids"] = batch["position_ids"].pin_memory()
    if "cu_seqlens" in batch:
        pinned["cu_seqlens"] = batch["cu_seqlens"].pin_memory()
    if "source" in batch:
        pinned["source"] = batch["source"].pin_memory()
    return pinned
