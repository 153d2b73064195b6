"""Checkpoints that survive being killed at any instant, written while training goes on, and
read back on any number of ranks.

Layout under `DIR/checkpoints/`:

    step_00000040/state/             model and optimizer: each rank writes the shards it holds
                                     (torch.distributed.checkpoint: `.metadata` and a `.distcp` per rank)
    step_00000040/trainer.pt         step, scheduler, model config (rank 0)
    step_00000040/rank-00000.pt      that rank's loader state and RNG states (one per rank)
    step_00000040/meta.json          written last, once every rank's part is there: "complete"
    latest                           name of the newest complete checkpoint

The sharded state is resharded when it is read, so a run saved on 2 ranks resumes on 1 or on 4,
and a reader beside the training (the evaluator, an export) takes the whole model in one
process. Files of our own are written to a temporary name, fsynced and renamed; a checkpoint
counts only once `meta.json` exists, so a kill during a write leaves the previous checkpoint in
charge. Saving stages the state into host memory (a copy, so the optimizer may step on), then a
background thread persists it; the next save waits for it. Only the newest `keep` complete
checkpoints stay.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp

from refinery.trainer.config import ModelConfig
from refinery.trainer.model import InternLM2ForCausalLM

# One process writes and reads a checkpoint without collectives, as intended: not worth a warning each time.
warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized",
                        category=UserWarning)

_STEP_DIR = re.compile(r"^step_(\d{8})$")
STATE_DIR = "state"
TRAINER_FILE = "trainer.pt"


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


def read_trainer_state(root: str | os.PathLike, step: int) -> dict:
    """Step, scheduler and model config of a complete checkpoint. FileNotFoundError once the
    trainer's keep-N policy has removed it."""
    return torch.load(Path(root) / step_dir_name(step) / TRAINER_FILE, map_location="cpu", weights_only=True)


def load_model(root: str | os.PathLike, step: int) -> InternLM2ForCausalLM:
    """The whole (unsharded) model of a complete checkpoint, read in this process alone and only
    the model's bytes (a reader beside the training: the evaluator, an export).
    FileNotFoundError once the trainer's keep-N policy has removed it."""
    cfg = ModelConfig.model_validate_json(read_trainer_state(root, step)["model_config"])
    model = InternLM2ForCausalLM(cfg)
    state = model.state_dict()  # the parameters themselves: filled in place
    folder = Path(root) / step_dir_name(step) / STATE_DIR
    try:
        dcp.load({"model": state}, checkpoint_id=folder)
    except Exception as err:
        if not folder.exists():
            raise FileNotFoundError(f"{folder}: removed while it was read") from err
        raise
    return model


class CheckpointManager:
    def __init__(self, root: str | os.PathLike, *, rank: int = 0, world_size: int = 1, keep: int = 3,
                 asynchronous: bool = True, rank_timeout_s: float = 600.0, group=None):
        """`group`: a process group of its own for the checkpoint's collectives (gloo), so that a
        save in the background never interleaves with the training's; None with one process."""
        self.root = Path(root)
        self.rank, self.world_size, self.keep = rank, world_size, keep
        self.asynchronous = asynchronous
        self.rank_timeout_s = rank_timeout_s
        self.group = group
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

    def load(self, step: int, state: dict) -> tuple[dict, dict]:
        """Fill `state` (this rank's sharded model and optimizer state dicts) in place from a
        complete checkpoint, whatever the world size that wrote it; returns (trainer state,
        this rank's state)."""
        folder = self.root / step_dir_name(step)
        meta = json.loads((folder / "meta.json").read_text())
        dcp.load(state, checkpoint_id=folder / STATE_DIR, process_group=self.group)
        # A run resumed on fewer or more ranks takes rank 0's loader position: the loader
        # state is global (windows consumed by all ranks), so any rank's copy serves.
        own = folder / rank_file(self.rank if self.rank < meta["world_size"] else 0)
        return read_trainer_state(self.root, step), torch.load(own, map_location="cpu", weights_only=True)

    # ---- writing --------------------------------------------------------------------------

    def save(self, step: int, state: dict, trainer: dict | None, own: dict) -> None:
        """Stage now (every rank, collectively); persist now or in the background. `state` is
        this rank's sharded state; `trainer` is given on rank 0 only."""
        self.wait()
        folder = self.root / step_dir_name(step)
        trainer, own = snapshot(trainer), snapshot(own)
        if not self.asynchronous:
            dcp.save(state, checkpoint_id=folder / STATE_DIR, process_group=self.group)
            self._persist(folder, step, trainer, own)
            return
        written = dcp.async_save(state, checkpoint_id=folder / STATE_DIR, process_group=self.group)
        self._thread = threading.Thread(target=self._run, args=(written, folder, step, trainer, own),
                                        name="checkpoint", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        """Block until the write in flight is on disk; re-raise its failure here."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            err, self._error = self._error, None
            raise RuntimeError("checkpoint write failed") from err

    def _run(self, written, folder: Path, step: int, trainer: dict | None, own: dict) -> None:
        try:
            written.result()
            self._persist(folder, step, trainer, own)
        except BaseException as exc:  # surfaced by the next save() or wait()
            self._error = exc

    def _persist(self, folder: Path, step: int, trainer: dict | None, own: dict) -> None:
        """After the shards: this rank's file; on rank 0 the trainer state, then, once every
        rank's file is there, `meta.json` and `latest`."""
        atomic_save(own, folder / rank_file(self.rank))
        if self.rank != 0:
            return
        atomic_save(trainer, folder / TRAINER_FILE)
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
