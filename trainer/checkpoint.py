"""Checkpoints that survive being killed at any instant, written while training goes on.

Layout under `DIR/checkpoints/`:

    step_00000040/train_state.pt     model, optimizer, scheduler, step (rank 0; replicas are equal)
    step_00000040/rank-00000.pt      that rank's loader state and RNG states (one per rank)
    step_00000040/meta.json          written last, once every rank's file is there: "complete"
    latest                           name of the newest complete checkpoint

Every file is written to a temporary name, fsynced and renamed, so a reader never sees half a
file; a checkpoint counts only once `meta.json` exists, so a kill during a write leaves the
previous checkpoint in charge. Saving snapshots the state into host memory (a copy, so the
optimizer may step on), then a background thread persists it; the next save waits for it.
Only the newest `keep` complete checkpoints stay.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import torch

_STEP_DIR = re.compile(r"^step_(\d{8})$")


def snapshot(obj: Any) -> Any:
    """A deep copy of a state tree with every tensor cloned into CPU memory."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return type(obj)((k, snapshot(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(snapshot(v) for v in obj)
    return obj


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary name in the same folder, fsync, rename."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def rank_file(rank: int) -> str:
    return f"rank-{rank:05d}.pt"


def complete_steps(root: str | os.PathLike) -> list[int]:
    """The steps of the complete checkpoints under `root` (none when it does not exist); reads only."""
    root = Path(root)
    if not root.is_dir():
        return []
    steps = []
    for entry in root.iterdir():
        m = _STEP_DIR.match(entry.name)
        if m and (entry / "meta.json").exists():
            steps.append(int(m.group(1)))
    return sorted(steps)


def load_shared(root: str | os.PathLike, step: int) -> dict:
    """The shared state (model, optimizer, ...) of a complete checkpoint for a reader beside the
    training (the evaluator): memory-mapped, copy-on-write, so taking only the model never reads
    the optimizer's bytes and nothing is written back. FileNotFoundError once the trainer's keep-N
    policy has removed it."""
    return torch.load(Path(root) / step_dir_name(step) / "train_state.pt", map_location="cpu", weights_only=True,
                      mmap=True)


class CheckpointManager:
    def __init__(self, root: str | os.PathLike, *, rank: int = 0, world_size: int = 1, keep: int = 3,
                 asynchronous: bool = True, rank_timeout_s: float = 600.0):
        self.root = Path(root)
        self.rank, self.world_size, self.keep = rank, world_size, keep
        self.asynchronous = asynchronous
        self.rank_timeout_s = rank_timeout_s
        self.root.mkdir(parents=True, exist_ok=True)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    # ---- reading --------------------------------------------------------------------------

    def complete_steps(self) -> list[int]:
        return complete_steps(self.root)

    def latest_step(self) -> int | None:
        """The newest complete checkpoint (also when a kill came between `meta.json` and `latest`)."""
        steps = self.complete_steps()
        return steps[-1] if steps else None

    def load(self, step: int) -> tuple[dict, dict]:
        """(shared state, this rank's state) of a complete checkpoint."""
        folder = self.root / step_dir_name(step)
        meta = json.loads((folder / "meta.json").read_text())
        shared = torch.load(folder / "train_state.pt", map_location="cpu", weights_only=True)
        # A run resumed on fewer or more ranks takes rank 0's loader position: the loader
        # state is global (windows consumed by all ranks), so any rank's copy serves.
        own = folder / rank_file(self.rank if self.rank < meta["world_size"] else 0)
        return shared, torch.load(own, map_location="cpu", weights_only=True)

    # ---- writing --------------------------------------------------------------------------

    def save(self, step: int, shared: dict | None, own: dict) -> None:
        """Snapshot now; persist now or in the background. `shared` is given on rank 0 only."""
        self.wait()
        shared, own = snapshot(shared), snapshot(own)
        if not self.asynchronous:
            self._persist(step, shared, own)
            return
        self._thread = threading.Thread(target=self._run, args=(step, shared, own), name="checkpoint", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        """Block until the write in flight is on disk; re-raise its failure here."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            err, self._error = self._error, None
            raise RuntimeError("checkpoint write failed") from err

    def _run(self, step: int, shared: dict | None, own: dict) -> None:
        try:
            self._persist(step, shared, own)
        except BaseException as exc:  # surfaced by the next save() or wait()
            self._error = exc

    def _persist(self, step: int, shared: dict | None, own: dict) -> None:
        folder = self.root / step_dir_name(step)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_save(own, folder / rank_file(self.rank))
        if self.rank != 0:
            return
        atomic_save(shared, folder / "train_state.pt")
        deadline = time.monotonic() + self.rank_timeout_s
        missing = [r for r in range(self.world_size) if not (folder / rank_file(r)).exists()]
        while missing:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{folder}: ranks {missing} did not write their checkpoint files")
            time.sleep(0.05)
            missing = [r for r in missing if not (folder / rank_file(r)).exists()]
        meta = {"step": step, "world_size": self.world_size, "time": time.time()}
        atomic_write_text(folder / "meta.json", json.dumps(meta) + "\n")
        atomic_write_text(self.root / "latest", step_dir_name(step) + "\n")
        self._prune()

    def _prune(self) -> None:
        for old in self.complete_steps()[:-self.keep]:
            shutil.rmtree(self.root / step_dir_name(old), ignore_errors=True)

    def discard_incomplete(self) -> None:
        """Remove folders a killed run left without `meta.json` (rank 0, before training resumes)."""
        for entry in self.root.iterdir():
            if _STEP_DIR.match(entry.name) and not (entry / "meta.json").exists():
                shutil.rmtree(entry, ignore_errors=True)
            elif entry.name.startswith(".") and entry.name.endswith(".tmp"):
                entry.unlink(missing_ok=True)
