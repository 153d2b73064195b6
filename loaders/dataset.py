"""`TokenDataset`: a resumable torch IterableDataset of packed windows over token shards.

Global order. For epoch `e`, shards are permuted (from `seed` and `e`) and taken in groups of
`shuffle_shards`; a group's blocks are permuted and laid end to end into the group's token
stream (documents keep their stored order inside a block; EOS follows every document unless
the shards already end documents with it). The group's stream is cut into windows of
`seq_len + 1` tokens, window `w` starting at token `w * seq_len` (consecutive windows overlap
by one token, so every token is a target exactly once), and the windows are permuted: a batch
holds windows from anywhere in the group, while a worker only needs the group's shards at a
time. The epoch's order is the groups' permuted windows, one group after the other.

Split. Rank `r` of `world_size` takes windows `start + r + world_size * q`, q = 0, 1, ... —
the same count on every rank (the tail that does not divide is dropped). Inside a rank, the
rank's items go to DataLoader workers in chunks of `chunk` consecutive items, round-robin;
with `chunk` equal to the batch size, a DataLoader hands out the rank's items in exactly this
order, whatever the number of workers.

State with DataLoader workers. Iterated directly (or by a DataLoader without workers) the
dataset counts what it handed out, so `state_dict()` is exact between items. Workers hold
copies, so the training process must count instead: `TokenLoader` (loaders/stateful.py) does
it through the position methods (`begin_pass`, `set_taken`, `end_pass`), and its `state_dict()`
after any batch resumes at the next batch on any number of workers.

Resumption is arithmetic, never replay: the state is `(epoch, consumed)` where `consumed` is
the number of the epoch's windows consumed by all ranks together. A fresh dataset loading it
starts at window `consumed`, with any number of ranks or workers; the manifest's per-block
token counts place that window without reading any shard before it.

Items (what the trainer consumes): a dict of
  - `input_ids`: int64 tensor `[seq_len]` — window tokens 0..seq_len-1;
  - `labels`: int64 tensor `[seq_len]` — window tokens 1..seq_len (without masking, a view
    sharing memory with `input_ids`: copy before changing it in place);
  - `index`: int — the window's global index in its epoch;
and, with `document_masking=True` (InternEvo-style packing for variable-length attention):
  - `labels` is -100 wherever the target is the first token of the next document;
  - `position_ids`: int64 `[seq_len]`, restarting at 0 at each document start;
  - `cu_seqlens`: int32 `[n_segments + 1]`, segment boundaries inside the window.
`collate_windows` stacks items into a batch and flattens `cu_seqlens` across it (flash-attn
varlen layout over the `[batch * seq_len]` tokens) with `max_seqlen`. With `batch_size` set,
the dataset yields such batches itself (`set_batching`; this is what `TokenLoader` uses), each batch being one
chunk, so the split and the state are the same as item by item; without masking, a batch's
`input_ids` and `labels` are views of one `[n, seq_len + 1]` array, offset by one token.

Speed. Where a run of items lies is worked out from the manifest alone, about a thousand items
at a time, with a few vectorized operations (window permutation, stream offsets, blocks). Each
window is then one slice of a memory-mapped block copied straight into the int64 array that
the tensors share (EOS, where the loader adds it, placed in the same write), and document
masking is computed for a whole batch at once: nothing is done per token in Python.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict, TypeVar, final

import numpy as np
import numpy.typing as npt
import pyarrow.fs as pafs
import torch
from torch.utils.data import IterableDataset, get_worker_info

from refinery.loaders.source import ShardSource

STATE_VERSION = 1
IGNORE_INDEX = -100

Ints = npt.NDArray[np.int64]
Tokens = npt.NDArray[np.int32]
# A block's token values, where its documents start in the stream, and where EOS follows each
# document (None: the shards hold it already).
Block = tuple[Tokens, Ints, Ints | None]
# Where planned windows lie: the block holding each one's first token, that token's place in the
# block's stream, and whether the whole window lies in that block.
Plan = tuple[list[int], list[int], list[bool]]


@final
class Window(TypedDict):
    """One item (see the module docstring); `source` is a mixture's: which source it came from."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    index: int
    position_ids: NotRequired[torch.Tensor]
    cu_seqlens: NotRequired[torch.Tensor]
    source: NotRequired[int]


@final
class Batch(TypedDict):
    """Windows batched as `collate_windows` does; what the trainer consumes."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor
    position_ids: NotRequired[torch.Tensor]
    cu_seqlens: NotRequired[torch.Tensor]
    max_seqlen: NotRequired[int]
    source: NotRequired[torch.Tensor]


@final
class CompactBatch(TypedDict):
    """Batches on their way out of a DataLoader worker: int32 windows `[n, seq_len + 1]`, a
    quarter of the bytes, split and widened by `expand_compact`."""

    windows: torch.Tensor
    index: list[int]


@final
class TokenState(TypedDict):
    """Where a `TokenDataset` stands (`consumed`: windows of `epoch` all ranks took), and what
    must match for it to be loaded."""

    version: int
    epoch: int
    consumed: int
    seed: int
    seq_len: int
    shuffle: bool
    shuffle_shards: int
    manifest_sha256: str


Out = TypeVar("Out")


@dataclass
class _Epoch:
    """One epoch's layout: block order, stream offsets, and the shard groups' windows."""

    order: Ints  # block ids in stream order
    starts: Ints  # starts[i] = first stream token of order[i]; starts[-1] = stream length
    group_tokens: Ints  # first stream token of each group (+ stream length)
    group_windows: Ints  # first global window of each group (+ window count)
    perms: dict[int, Ints] = field(default_factory=dict)  # group -> window permutation, the last few used

    @property
    def windows(self) -> int:
        return int(self.group_windows[-1])


class TokenDataset(IterableDataset[Window | Batch | CompactBatch]):
    """Packed `seq_len + 1` windows over a shard folder or URI; see the module docstring."""

    def __init__(
        self,
        path_or_uri: str | os.PathLike[str],
        seq_len: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        document_masking: bool = False,
        shuffle_shards: int = 8,
        chunk: int = 1,
        batch_size: int | None = None,
        filesystem: pafs.FileSystem | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        verify: bool = True,
        block_cache: int = 4096,
    ):
        if seq_len < 1:
            raise ValueError("seq_len must be >= 1")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world_size {world_size}")
        if shuffle_shards < 1 or chunk < 1:
            raise ValueError("shuffle_shards and chunk must be >= 1")
        self.source = ShardSource(path_or_uri, filesystem=filesystem, cache_dir=cache_dir, verify=verify)
        self.seq_len = seq_len
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.document_masking = document_masking
        self.shuffle_shards = shuffle_shards
        self.chunk = chunk
        self.batch_size: int | None = None
        self.compact = False
        if batch_size is not None:
            self.set_batching(batch_size)
        self.block_cache = block_cache
        manifest = self.source.manifest
        self.manifest_sha256 = self.source.manifest_sha256
        tok = manifest["tokenizer"]
        self.eos_id = int(tok["eos_id"])
        # Shards written with add_eos already end every document with EOS.
        self.append_eos = not tok.get("add_eos", False)
        if self.append_eos and self.eos_id < 0:
            raise ValueError("the shards' tokenizer has no EOS id to separate documents")
        shard_ix, batch_ix, docs, tokens = [], [], [], []  # per block
        for s, entry in enumerate(manifest["shards"]):
            for b, (n_docs, n_tokens, *_) in enumerate(entry["blocks"]):
                shard_ix.append(s)
                batch_ix.append(b)
                docs.append(n_docs)
                tokens.append(n_tokens)
        self._block_shard = np.asarray(shard_ix, dtype=np.int64)
        self._block_batch = np.asarray(batch_ix, dtype=np.int64)
        self._block_len = np.asarray(tokens, dtype=np.int64) + (
            np.asarray(docs, dtype=np.int64) if self.append_eos else 0
        )
        self._epoch = 0
        self._start = 0  # global window where the current pass began
        self._count = 0  # items this rank took since `_start`
        self._epochs: dict[int, _Epoch] = {}
        self._blocks: OrderedDict[int, Block] = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_blocks"] = OrderedDict()
        return state

    # ---- global order -------------------------------------------------------------------

    def _rng(self, *keys: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, *keys])

    def epoch_layout(self, epoch: int) -> _Epoch:
        layout = self._epochs.get(epoch)
        if layout is None:
            n_shards = len(self.source.manifest["shards"])
            if self.shuffle:
                rng = self._rng(epoch, 0)
                shards = rng.permutation(n_shards)
                # Blocks are numbered shard after shard: shard s holds blocks first[s] .. first[s + 1] - 1.
                first = np.searchsorted(self._block_shard, np.arange(n_shards + 1)).tolist()
                groups = [
                    rng.permutation(
                        np.concatenate([np.arange(first[s], first[s + 1]) for s in shards[g : g + self.shuffle_shards]])
                    )
                    for g in range(0, n_shards, self.shuffle_shards)
                ]
            else:
                groups = [np.arange(len(self._block_len))]
            order = np.concatenate(groups) if groups else np.zeros(0, dtype=np.int64)
            starts = np.zeros(len(order) + 1, dtype=np.int64)
            np.cumsum(self._block_len[order], out=starts[1:])
            group_tokens = starts[np.cumsum([0] + [len(g) for g in groups])]
            windows = np.maximum(np.diff(group_tokens) - 1, 0) // self.seq_len
            group_windows = np.concatenate([[0], np.cumsum(windows)]).astype(np.int64)
            layout = self._epochs[epoch] = _Epoch(order, starts, group_tokens, group_windows)
            if len(self._epochs) > 2:
                del self._epochs[next(iter(self._epochs))]
        return layout

    def windows_per_epoch(self, epoch: int | None = None) -> int:
        return self.epoch_layout(self._epoch if epoch is None else epoch).windows

    def _window_starts(self, epoch: int, indices: Ints) -> Ints:
        """First stream token of each global window."""
        layout = self.epoch_layout(epoch)
        group = np.searchsorted(layout.group_windows, indices, side="right") - 1
        local = indices - layout.group_windows[group]
        if self.shuffle:
            if group[0] == group[-1]:  # sorted indices, one group: the usual case
                local = self._group_perm(layout, epoch, int(group[0]))[local]
            else:
                local = local.copy()
                for g in np.unique(group).tolist():
                    rows = group == g
                    local[rows] = self._group_perm(layout, epoch, g)[local[rows]]
        return layout.group_tokens[group] + local * self.seq_len

    def _group_perm(self, layout: _Epoch, epoch: int, group: int) -> Ints:
        perm = layout.perms.get(group)
        if perm is None:
            n = int(layout.group_windows[group + 1] - layout.group_windows[group])
            perm = layout.perms[group] = self._rng(epoch, 1, group).permutation(n)
            if len(layout.perms) > 2:
                del layout.perms[next(iter(layout.perms))]
        return perm

    def _block(self, block: int) -> Block:
        """A block's token values (zero copy from the mapped shard), where its documents start
        in the stream, and where EOS is inserted after each document (None: not inserted)."""
        hit = self._blocks.get(block)
        if hit is not None:
            self._blocks.move_to_end(block)
            return hit
        batch = self.source.batch(int(self._block_shard[block]), int(self._block_batch[block]))
        ids = batch.column(0)
        _, offset_buf, _, value_buf = ids.buffers()
        offsets = np.frombuffer(offset_buf, dtype=np.int32)[ids.offset : ids.offset + len(ids) + 1]
        values = np.frombuffer(value_buf, dtype=np.int32)[offsets[0] : offsets[-1]]
        offsets = offsets.astype(np.int64) - offsets[0]
        if self.append_eos:
            shift = np.arange(len(offsets) - 1)
            hit = (values, offsets[:-1] + shift, offsets[1:] + shift)
        else:
            hit = (values, offsets[:-1], None)
        self._blocks[block] = hit
        if len(self._blocks) > self.block_cache:
            self._blocks.popitem(last=False)
        return hit

    def _read(self, block: int, a: int, b: int, out: np.ndarray | None = None) -> np.ndarray:
        """Stream tokens `a .. b-1` of a block (block-local positions), written into `out` if
        given (EOS placed in one pass, without an intermediate array)."""
        values, _, ends = self._block(block)
        c0, c1 = (0, 0) if ends is None else np.searchsorted(ends, (a, b)).tolist()
        if ends is None or c0 == c1:
            piece = values[a - c0 : b - c0]
            if out is None:
                return piece
            out[:] = piece
            return out
        if out is None:
            out = np.empty(b - a, dtype=values.dtype)
        eos = ends[c0:c1] - a
        tokens = np.ones(b - a, dtype=bool)
        tokens[eos] = False
        out[tokens] = values[a - c0 : b - c1]
        out[eos] = self.eos_id
        return out

    def _window_tokens(self, epoch: int, index: int) -> tuple[Ints, Ints]:
        """The `seq_len + 1` tokens of window `index` and where documents start inside it."""
        layout = self.epoch_layout(epoch)
        lo = int(self._window_starts(epoch, np.asarray([index]))[0])
        hi = lo + self.seq_len + 1
        pos = int(np.searchsorted(layout.starts, lo, side="right")) - 1
        pieces, doc_starts = [], []
        at = lo
        while at < hi:
            block, base = int(layout.order[pos]), int(layout.starts[pos])
            a, b = at - base, min(hi, int(layout.starts[pos + 1])) - base
            pieces.append(self._read(block, a, b))
            starts = self._block(block)[1]
            first, last = np.searchsorted(starts, [a, b])
            doc_starts.append(starts[first:last] - a + (at - lo))
            at = base + b
            pos += 1
        return np.concatenate(pieces).astype(np.int64), np.concatenate(doc_starts)

    def window(self, epoch: int, index: int) -> Window:
        """Item `index` of the epoch's global window order (any rank's)."""
        if not 0 <= index < self.epoch_layout(epoch).windows:
            raise IndexError(f"window {index} outside epoch of {self.epoch_layout(epoch).windows}")
        tokens, doc_starts = self._window_tokens(epoch, index)
        window = torch.from_numpy(tokens)
        item = Window(input_ids=window[:-1], labels=window[1:].clone(), index=index)
        if self.document_masking:
            _mask_documents(item, doc_starts, self.seq_len)
        return item

    def _plan(self, epoch: int, indices: Ints) -> Plan:
        """Where each window lies, from the layout alone (no shard is read)."""
        layout = self.epoch_layout(epoch)
        lo = self._window_starts(epoch, indices)
        pos = np.searchsorted(layout.starts, lo, side="right") - 1
        inside = lo + self.seq_len < layout.starts[pos + 1]
        return layout.order[pos].tolist(), (lo - layout.starts[pos]).tolist(), inside.tolist()

    def _fill(
        self,
        epoch: int,
        indices: Ints,
        plan: Plan,
        dtype: type[np.int32] | type[np.int64] = np.int64,
        doc_starts: list[Ints] | None = None,
    ) -> np.ndarray:
        """The planned windows' tokens, `[n, seq_len + 1]`, copied straight from the mapped
        blocks into one array (the only copy made). With a `doc_starts` list, each window's
        document starts (offsets inside the window) are appended to it."""
        n = self.seq_len + 1
        blocks, offsets, inside = plan
        out = np.empty((len(blocks), n), dtype=dtype)
        cached = self._blocks
        for row, (block, a, one_block) in enumerate(zip(blocks, offsets, inside)):
            if not one_block:
                out[row], starts = self._window_tokens(epoch, int(indices[row]))
                if doc_starts is not None:
                    doc_starts.append(starts)
                continue
            values, starts, ends = cached.get(block) or self._block(block)
            if ends is None:
                out[row] = values[a : a + n]
            else:
                self._read(block, a, a + n, out[row])
            if doc_starts is not None:
                doc_starts.append(starts[starts.searchsorted(a) : starts.searchsorted(a + n)] - a)
        return out

    def _masked(self, epoch: int, indices: Ints, plan: Plan) -> tuple[Ints, Ints, Ints, Ints]:
        """Tokens and document masking of the planned windows, for all of them at once:
        `windows [n, seq_len + 1]`, `labels [n, seq_len]` (-100 where the target starts the next
        document), `position_ids [n, seq_len]` and `cu_seqlens` over the `n * seq_len` tokens."""
        found: list[Ints] = []
        windows = self._fill(epoch, indices, plan, doc_starts=found)
        n, seq_len = windows.shape[0], self.seq_len
        rows = np.repeat(np.arange(n), np.fromiter(map(len, found), dtype=np.int64, count=n))
        starts = np.concatenate(found)
        labels = windows[:, 1:].copy()
        ends = starts >= 1
        labels.reshape(-1)[rows[ends] * seq_len + starts[ends] - 1] = IGNORE_INDEX
        inner = ends & (starts < seq_len)
        # Segments start at every window's first token and at the documents starting inside.
        first = np.zeros(n * seq_len + 1, dtype=bool)
        first[::seq_len] = True
        first[rows[inner] * seq_len + starts[inner]] = True
        cu = np.flatnonzero(first)
        # Positions count up by one and fall back to 0 at each segment start.
        step = np.ones(n * seq_len, dtype=np.int64)
        step[cu[1:-1]] = 1 - np.diff(cu[:-1])
        step[0] = 0
        return windows, labels, np.cumsum(step).reshape(n, seq_len), cu

    def _batch(self, epoch: int, indices: Ints, plan: Plan | None = None) -> Batch | CompactBatch:
        """A collated batch of windows (see `collate_windows`), gathered without per-item work:
        without masking, `input_ids` and `labels` are views of one `[n, seq_len + 1]` tensor,
        offset by one."""
        plan = plan or self._plan(epoch, indices)
        if self.document_masking:
            windows, labels, positions, cu = self._masked(epoch, indices, plan)
            return Batch(
                input_ids=torch.from_numpy(windows[:, :-1]),
                labels=torch.from_numpy(labels),
                index=torch.from_numpy(indices),
                position_ids=torch.from_numpy(positions),
                cu_seqlens=torch.from_numpy(cu.astype(np.int32)),
                max_seqlen=int(np.diff(cu).max()),
            )
        if self.compact:
            return CompactBatch(
                windows=torch.from_numpy(self._fill(epoch, indices, plan, np.int32)), index=indices.tolist()
            )
        windows = self._fill(epoch, indices, plan)
        return Batch(
            input_ids=torch.from_numpy(windows[:, :-1]),
            labels=torch.from_numpy(windows[:, 1:]),
            index=torch.from_numpy(indices),
        )

    # ---- position: where a pass starts and how far its consumer got ----------------------

    def begin_pass(self) -> int:
        """Start a pass where the last one stopped: the items taken are folded into the start,
        and a finished epoch rolls over. Returns the pass's epoch (for `end_pass`)."""
        self._start += self._count * self.world_size
        self._count = 0
        if self.items_left() <= 0 and self._start > 0:
            self.end_pass(self._epoch)
        return self._epoch

    def set_taken(self, items: int) -> None:
        """The consumer took `items` items of the current pass. Iterated in this process the
        dataset counts them itself; DataLoader workers hold copies, so their consumer counts."""
        self._count = items

    def end_pass(self, epoch: int) -> None:
        """A pass over `epoch` reached its end: go on at the next epoch's start, unless the
        position was set anew meanwhile (`load_state_dict`, `set_epoch`)."""
        if self._epoch == epoch:
            self._epoch, self._start, self._count = epoch + 1, 0, 0

    def items_left(self) -> int:
        """This rank's items of the current epoch not taken yet."""
        return max(0, (self.windows_per_epoch() - self._start) // self.world_size - self._count)

    # ---- iteration and state ------------------------------------------------------------

    def _positions(self, total: int, worker: int, workers: int, group: int = 1024) -> Iterator[Ints]:
        """This worker's rank-local item numbers, in order, about `group` at a time (each group is
        located with a few vectorized operations)."""
        step = self.chunk * workers * -(-group // (self.chunk * workers))
        for first in range(0, total, step):
            q = np.arange(first, min(first + step, total))
            if workers > 1:
                q = q[(q // self.chunk) % workers == worker]
            if len(q):
                yield q

    def _items(self, epoch: int, indices: Ints, fill: int = 64) -> Iterator[Window]:
        """The items of global windows `indices`, in order, copied `fill` windows at a time (an
        item holds on to a small array only)."""
        blocks, offsets, inside = self._plan(epoch, indices)
        for a in range(0, len(indices), fill):
            part, part_plan = indices[a : a + fill], (blocks[a : a + fill], offsets[a : a + fill], inside[a : a + fill])
            if not self.document_masking:
                windows = self._fill(epoch, part, part_plan)
                inputs, labels = torch.from_numpy(windows[:, :-1]), torch.from_numpy(windows[:, 1:])
                yield from (Window(input_ids=x, labels=y, index=g) for x, y, g in zip(inputs, labels, part.tolist()))
                continue
            masked, masked_labels, positions, cu = self._masked(epoch, part, part_plan)
            inputs, labels, position_ids = (torch.from_numpy(x) for x in (masked[:, :-1], masked_labels, positions))
            bounds = np.searchsorted(cu, np.arange(len(part) + 1) * self.seq_len).tolist()
            cu32 = cu.astype(np.int32)
            for row, g in enumerate(part.tolist()):
                own = cu32[bounds[row] : bounds[row + 1] + 1] - row * self.seq_len
                yield Window(
                    input_ids=inputs[row],
                    labels=labels[row],
                    index=g,
                    position_ids=position_ids[row],
                    cu_seqlens=torch.from_numpy(own),
                )

    def _batches(self, epoch: int, q: Ints, indices: Ints) -> tuple[list[int], Iterator[Batch | CompactBatch]]:
        """The batches (one per chunk) of the items `q` and, for each, the items taken after it."""
        cuts = (np.flatnonzero(np.diff(q // self.chunk)) + 1).tolist()
        bounds = list(zip([0] + cuts, cuts + [len(q)]))
        taken = [int(q[b - 1]) + 1 for _, b in bounds]
        blocks, offsets, inside = self._plan(epoch, indices)
        return taken, (self._batch(epoch, indices[a:b], (blocks[a:b], offsets[a:b], inside[a:b])) for a, b in bounds)

    def _pass(self, produce: Callable[[int, Ints, Ints], tuple[list[int], Iterator[Out]]]) -> Iterator[Out]:
        """One pass from the current position to the epoch's end: `produce(epoch, q, indices)`
        gives the outputs of rank-local items `q` (global windows `indices`) and, for each, the
        items taken after it."""
        epoch = self.begin_pass()
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        start, total = self._start, self.items_left()
        for q in self._positions(total, worker, workers):
            indices = start + self.rank + self.world_size * q
            taken, out = produce(epoch, q, indices)
            for n, x in zip(taken, out):
                if info is None:
                    self.set_taken(n)
                yield x
        if info is None:
            self.end_pass(epoch)

    def items(self) -> Iterator[Window]:
        """A pass item by item."""
        return self._pass(lambda epoch, q, indices: ((q + 1).tolist(), self._items(epoch, indices)))

    def batches(self) -> Iterator[Batch | CompactBatch]:
        """A pass batch by batch (after `set_batching`)."""
        if not self.batch_size:
            raise ValueError("batches need a batch size: call set_batching first")
        return self._pass(self._batches)

    def __iter__(self) -> Iterator[Window | Batch | CompactBatch]:
        """A pass: batches after `set_batching`, else items."""
        return self.batches() if self.batch_size else self.items()

    def state_dict(self) -> TokenState:
        return {
            "version": STATE_VERSION,
            "epoch": self._epoch,
            "consumed": self._start + self._count * self.world_size,
            "seed": self.seed,
            "seq_len": self.seq_len,
            "shuffle": self.shuffle,
            "shuffle_shards": self.shuffle_shards,
            "manifest_sha256": self.manifest_sha256,
        }

    def load_state_dict(self, state: TokenState) -> None:
        """Continue where `state` stopped; ranks and workers may differ from the saving run."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported loader state version {state.get('version')!r}")
        saved: Mapping[str, object] = state
        for key in ("seed", "seq_len", "shuffle", "shuffle_shards", "manifest_sha256"):
            if saved[key] != getattr(self, key):
                raise ValueError(f"loader state has {key}={saved[key]!r}, this dataset {getattr(self, key)!r}")
        self._epoch, self._start, self._count = int(state["epoch"]), int(state["consumed"]), 0

    def set_batching(self, batch_size: int, *, compact: bool = False) -> None:
        """Yield batches of `batch_size` consecutive items of the rank (each batch one chunk of the
        split) instead of items; `compact`: as `CompactBatch`es, cheaper to send between processes."""
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.batch_size = self.chunk = batch_size
        self.compact = compact

    def set_epoch(self, epoch: int) -> None:
        """Start epoch `epoch` from its beginning."""
        self._epoch, self._start, self._count = epoch, 0, 0


def _mask_documents(item: Window, doc_starts: Ints, seq_len: int) -> None:
    """Labels, position ids and cu_seqlens for a window whose documents start at
    `doc_starts` (offsets inside the `seq_len + 1` window)."""
    inside = doc_starts[(doc_starts >= 1) & (doc_starts <= seq_len)]
    labels = item["labels"]
    labels[torch.from_numpy(inside - 1)] = IGNORE_INDEX
    segments = np.unique(np.concatenate([[0], inside[inside < seq_len], [seq_len]]))
    lengths = np.diff(segments)
    positions = np.arange(seq_len) - np.repeat(segments[:-1], lengths)
    item["position_ids"] = torch.from_numpy(positions.astype(np.int64))
    item["cu_seqlens"] = torch.from_numpy(segments.astype(np.int32))


def expand_compact(batch: Batch | CompactBatch, batch_size: int) -> list[Batch]:
    """Batches of `batch_size` from a compact one, with `input_ids` / `labels` int64 views offset
    by one; any other batch as it is."""
    if "windows" not in batch:
        return [batch]
    # NumPy's cast runs on this thread; torch's wakes its thread pool, which competes with the
    # DataLoader workers for the cores.
    windows = torch.from_numpy(batch["windows"].numpy().astype(np.int64))
    inputs, labels = windows[:, :-1], windows[:, 1:]
    index = torch.as_tensor(batch["index"], dtype=torch.int64)
    return [
        Batch(
            input_ids=inputs[a : a + batch_size],
            labels=labels[a : a + batch_size],
            index=index[a : a + batch_size],
        )
        for a in range(0, len(windows), batch_size)
    ]


def collate_windows(items: list[Window]) -> Batch:
    """Batch items: stack the fixed-size tensors; flatten `cu_seqlens` over the batch."""
    batch = Batch(
        input_ids=torch.stack([x["input_ids"] for x in items]),
        labels=torch.stack([x["labels"] for x in items]),
        index=torch.tensor([x["index"] for x in items], dtype=torch.int64),
    )
    if "source" in items[0]:  # a mixture's window: which source it came from
        batch["source"] = torch.tensor([x["source"] for x in items], dtype=torch.int64)
    if "position_ids" in items[0]:
        batch["position_ids"] = torch.stack([x["position_ids"] for x in items])
        seq_len = items[0]["input_ids"].shape[0]
        parts = [items[0]["cu_seqlens"]] + [x["cu_seqlens"][1:] + i * seq_len for i, x in enumerate(items) if i]
        cu = torch.cat(parts)
        batch["cu_seqlens"] = cu
        batch["max_seqlen"] = int((cu[1:] - cu[:-1]).max())
    return batch
