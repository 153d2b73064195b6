"""Checkpoints that survive being killed at any instant, written while training goes on, and
read back on any number of ranks, on a local disk or an object store (`checkpoint.folder:
s3://bucket/run/checkpoints`).

Layout under the checkpoint folder (default `DIR/checkpoints/`):

    step_00000040/state/             model and optimizer: each rank writes the shards it holds
                                     (torch.distributed.checkpoint: `.metadata` and a `.distcp` per rank)
    step_00000040/trainer.pt         step, scheduler, model config (rank 0)
    step_00000040/rank-00000.pt      that rank's loader state and RNG states (one per rank)
    step_00000040/meta.json          written last, once every rank's part is there: "complete"
    latest                           name of the newest complete checkpoint

The sharded state is resharded when it is read, so a run saved on 2 ranks resumes on 1 or on 4,
and a reader beside the training (the evaluator, an export) takes the whole model in one
process. Every file of our own is written atomically (`refinery.pipeline.storage.atomic_write`:
a temporary name fsynced and renamed on a disk, one PUT on an object store); a checkpoint counts
only once `meta.json` exists, so a kill during a write leaves the previous checkpoint in charge.
Saving stages the state into host memory (a copy, so the optimizer may step on), then a
background thread persists it; the next save waits for it. Only the newest `keep` complete
checkpoints stay.
"""

from __future__ import annotations

import io
import json
import os
import re
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import torch
import torch.distributed.checkpoint as dcp
import yaml
from torch.distributed.checkpoint.filesystem import FileSystemBase

from refinery.pipeline.storage import atomic_write, filesystem, is_local, is_temporary, list_folders
from refinery.trainer.config import ModelConfig
from refinery.trainer.model import InternLM2ForCausalLM

# One process writes and reads a checkpoint without collectives, as intended: not worth a warning each time.
warnings.filterwarnings(
    "ignore", message="torch.distributed is disabled, unavailable or uninitialized", category=UserWarning
)

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


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """A local text file written atomically (readers see the old or the new file, never half)."""
    atomic_write(pafs.LocalFileSystem(), os.path.abspath(path), text.encode())


def folder_of(train_out: str | os.PathLike) -> str:
    """The checkpoint folder of a training output folder: its `train.yaml`'s `checkpoint.folder`,
    else `TRAIN_OUT/checkpoints`."""
    config = Path(train_out) / "train.yaml"
    folder = yaml.safe_load(config.read_text()).get("checkpoint", {}).get("folder") if config.exists() else None
    return folder or str(Path(train_out) / "checkpoints")


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def rank_file(rank: int) -> str:
    return f"rank-{rank:05d}.pt"


def _join(*parts: str) -> str:
    return "/".join(p.rstrip("/") for p in parts)


class _Files(FileSystemBase):
    """torch.distributed.checkpoint's file access on a pyarrow filesystem (an object store)."""

    def __init__(self, fs: pafs.FileSystem):
        self.fs = fs

    @contextmanager
    def create_stream(self, path, mode: str):
        stream = self.fs.open_input_file(str(path)) if "r" in mode else self.fs.open_output_stream(str(path))
        with stream:
            yield stream

    def concat_path(self, path, suffix: str) -> str:
        return _join(str(path), suffix)

    def rename(self, path, new_path) -> None:
        self.fs.move(str(path), str(new_path))

    def init_path(self, path) -> str:
        return str(path)

    def mkdir(self, path) -> None:
        self.fs.create_dir(str(path), recursive=True)

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id) -> bool:
        return True

    def exists(self, path) -> bool:
        return self.fs.get_file_info(str(path)).type != pafs.FileType.NotFound

    def rm_file(self, path) -> None:
        self.fs.delete_file(str(path))


def _storage(uri: str, writer: bool):
    """DCP's reader or writer of the state folder at `uri`: its own for a local folder, on the
    pyarrow filesystem of an object store (where a closed upload is already durable)."""
    if is_local(uri):
        return dcp.FileSystemWriter(uri) if writer else dcp.FileSystemReader(uri)
    fs, path = filesystem(uri)
    storage = dcp.FileSystemWriter(path, sync_files=False) if writer else dcp.FileSystemReader(path)
    storage.fs, storage.path = _Files(fs), path
    return storage


def _save_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _load(fs: pafs.FileSystem, path: str) -> Any:
    with fs.open_input_file(path) as fh:
        return torch.load(io.BytesIO(fh.read()), map_location="cpu", weights_only=True)


def complete_steps(root: str | os.PathLike) -> list[int]:
    """The steps of the complete checkpoints under `root` (none when it does not exist); reads only."""
    fs, path = filesystem(str(root))
    steps = []
    for name in list_folders(fs, path):
        m = _STEP_DIR.match(name)
        if m and fs.get_file_info(_join(path, name, "meta.json")).type == pafs.FileType.File:
            steps.append(int(m.group(1)))
    return sorted(steps)


def read_trainer_state(root: str | os.PathLike, step: int) -> dict:
    """Step, scheduler and model config of a complete checkpoint. FileNotFoundError once the
    trainer's keep-N policy has removed it."""
    fs, path = filesystem(str(root))
    return _load(fs, _join(path, step_dir_name(step), TRAINER_FILE))


def load_model(root: str | os.PathLike, step: int) -> InternLM2ForCausalLM:
    """The whole (unsharded) model of a complete checkpoint, read in this process alone and only
    the model's bytes (a reader beside the training: the evaluator, an export).
    FileNotFoundError once the trainer's keep-N policy has removed it."""
    cfg = ModelConfig.model_validate_json(read_trainer_state(root, step)["model_config"])
    model = InternLM2ForCausalLM(cfg)
    state = model.state_dict()  # the parameters themselves: filled in place
    folder = _join(str(root), step_dir_name(step), STATE_DIR)
    try:
        dcp.load({"model": state}, storage_reader=_storage(folder, writer=False))
    except Exception as err:
        fs, path = filesystem(folder)
        if fs.get_file_info(path).type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"{folder}: removed while it was read") from err
        raise
    return model


class CheckpointManager:
    def __init__(
        self,
        root: str | os.PathLike,
        *,
        rank: int = 0,
        world_size: int = 1,
        keep: int = 3,
        asynchronous: bool = True,
        rank_timeout_s: float = 600.0,
        group=None,
    ):
        """`root`: a local folder or an object-store URI. `group`: a process group of its own for
        the checkpoint's collectives (gloo), so that a save in the background never interleaves
        with the training's; None with one process."""
        self.root = str(root)
        self.fs, self.path = filesystem(self.root)
        self.rank, self.world_size, self.keep = rank, world_size, keep
        self.asynchronous = asynchronous
        self.rank_timeout_s = rank_timeout_s
        self.group = group
        self.fs.create_dir(self.path, recursive=True)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def _file(self, *parts: str) -> str:
        return _join(self.path, *parts)

    def _exists(self, *parts: str) -> bool:
        return self.fs.get_file_info(self._file(*parts)).type != pafs.FileType.NotFound

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
        folder = step_dir_name(step)
        with self.fs.open_input_file(self._file(folder, "meta.json")) as fh:
            meta = json.loads(fh.read())
        dcp.load(
            state, storage_reader=_storage(_join(self.root, folder, STATE_DIR), writer=False), process_group=self.group
        )
        # A run resumed on fewer or more ranks takes rank 0's loader position: the loader
        # state is global (windows consumed by all ranks), so any rank's copy serves.
        own = rank_file(self.rank if self.rank < meta["world_size"] else 0)
        return read_trainer_state(self.root, step), _load(self.fs, self._file(folder, own))

    # ---- writing --------------------------------------------------------------------------

    def save(self, step: int, state: dict, trainer: dict | None, own: dict) -> None:
        """Stage now (every rank, collectively); persist now or in the background. `state` is
        this rank's sharded state; `trainer` is given on rank 0 only."""
        self.wait()
        folder = step_dir_name(step)
        trainer, own = snapshot(trainer), snapshot(own)
        writer = _storage(_join(self.root, folder, STATE_DIR), writer=True)
        if not self.asynchronous:
            dcp.save(state, storage_writer=writer, process_group=self.group)
            self._persist(folder, step, trainer, own)
            return
        written = dcp.async_save(state, storage_writer=writer, process_group=self.group)
        self._thread = threading.Thread(
            target=self._run, args=(written, folder, step, trainer, own), name="checkpoint", daemon=True
        )
        self._thread.start()

    def wait(self) -> None:
        """Block until the write in flight is on disk; re-raise its failure here."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            err, self._error = self._error, None
            raise RuntimeError("checkpoint write failed") from err

    def _run(self, written, folder: str, step: int, trainer: dict | None, own: dict) -> None:
        try:
            written.result()
            self._persist(folder, step, trainer, own)
        except BaseException as exc:  # surfaced by the next save() or wait()
            self._error = exc

    def _persist(self, folder: str, step: int, trainer: dict | None, own: dict) -> None:
        """After the shards: this rank's file; on rank 0 the trainer state, then, once every
        rank's file is there, `meta.json` and `latest`."""
        atomic_write(self.fs, self._file(folder, rank_file(self.rank)), _save_bytes(own))
        if self.rank != 0:
            return
        atomic_write(self.fs, self._file(folder, TRAINER_FILE), _save_bytes(trainer))
        deadline = time.monotonic() + self.rank_timeout_s
        missing = [r for r in range(self.world_size) if not self._exists(folder, rank_file(r))]
        while missing:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self._file(folder)}: ranks {missing} did not write their checkpoint files")
            time.sleep(0.05)
            missing = [r for r in missing if not self._exists(folder, rank_file(r))]
        meta = {"step": step, "world_size": self.world_size, "time": time.time()}
        atomic_write(self.fs, self._file(folder, "meta.json"), (json.dumps(meta) + "\n").encode())
        atomic_write(self.fs, self._file("latest"), (folder + "\n").encode())
        self._prune()

    def _prune(self) -> None:
        for old in self.complete_steps()[: -self.keep]:
            self.fs.delete_dir(self._file(step_dir_name(old)))

    def discard_incomplete(self) -> None:
        """Remove folders a killed run left without `meta.json` (rank 0, before training resumes),
        and temporary files of writes it did not finish."""
        for name in list_folders(self.fs, self.path):
            if _STEP_DIR.match(name) and not self._exists(name, "meta.json"):
                self.fs.delete_dir(self._file(name))
        infos = self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True))
        for info in infos:
            if info.type == pafs.FileType.File and is_temporary(info.base_name):
                self.fs.delete_file(info.path)
