"""The train loop: one process per rank (torchrun sets RANK/WORLD_SIZE); with several, the model is
sharded with FSDP2 (or replicated with DDP, `parallel.strategy`; see `refinery.trainer.parallel`).

Each optimizer step takes `global_batch_size` sequences over all ranks (each rank accumulates
`global_batch_size / (micro_batch_size x ranks)` micro-batches), clips the global gradient norm,
steps AdamW and the schedule, and rank 0 appends one JSON line to `DIR/metrics.jsonl`: loss,
learning rate, gradient norm, tokens/s, model TFLOP/s per device, MFU on a GPU of known peak,
and peak memory. A resumed run (`resume=True`) restores model, optimizer, schedule, loader
position and RNG from the newest complete checkpoint, on any number of ranks (the checkpoint's
shards are resharded), and drops the metric lines written after it, so the file always reads as
one uninterrupted run.

`Trainer` is one rank's run: its `TrainState` (what a checkpoint restores) and the named steps
(`build`, `train_step`, `evaluate`, `save`, `state_dict`, `load`, and `fit`, which runs them).
Its batches come from `refinery.loaders.TokenLoader`, cycled over epochs, full batches only.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch.nn.parallel import DistributedDataParallel

from refinery.loaders import Batch, TokenDataset, TokenLoader
from refinery.trainer.checkpoint import CheckpointManager, atomic_write_text, complete_steps
from refinery.trainer.config import ModelConfig, TrainConfig
from refinery.trainer.data import open_training_data, source_names, to_device, vocab_size_of
from refinery.trainer.flops import flops_per_token, peak_flops, peak_memory_gib
from refinery.trainer.hf import save_hf
from refinery.trainer.model import InternLM2ForCausalLM
from refinery.trainer.optim import adamw, scheduler
from refinery.trainer.parallel import (
    checkpoint_layers,
    clip_gradients,
    compile_layers,
    full_model_state,
    load_sharded_state,
    set_gradient_sync,
    shard,
    sharded_state,
    strategy,
)

# Written by rank 0 once the last step is checkpointed and exported; an evaluator that follows the
# run (`refinery eval --watch`) stops after it.
FINISHED = "finished.json"


class NonFiniteLoss(FloatingPointError):
    pass


class Preempted(Exception):
    """SIGTERM arrived; the run stopped at a step boundary after writing a checkpoint."""


class _StopOnSigterm:
    """Turns SIGTERM (a scheduler's preemption notice) into a flag read between steps, so the run
    can checkpoint the step it finished instead of losing the work since the last checkpoint."""

    def __init__(self):
        self.flag = False
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._set)

    def _set(self, _signum, _frame):
        self.flag = True

    def restore(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)

    def agreed(self, world: int, device) -> bool:
        """True on every rank once any rank was told to stop."""
        if world == 1:
            return self.flag
        flag = torch.tensor(float(self.flag), device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


def _init_distributed(device_kind: str) -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, 0
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_kind == "cuda" else "gloo")
    return dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0"))


def _device(cfg: TrainConfig, local_rank: int) -> torch.device:
    kind = cfg.device
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda":
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _bf16(cfg: TrainConfig, device: torch.device) -> bool:
    if cfg.precision == "fp32":
        return False
    return cfg.precision == "bf16" or (device.type == "cuda" and torch.cuda.is_bf16_supported())


def _autocast(cfg: TrainConfig, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16) if _bf16(cfg, device) else nullcontext()


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    kind, key, *rest = state["numpy"]
    np.random.set_state((kind, key.numpy().astype(np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _truncate_metrics(path: Path, step: int) -> None:
    """Keep the lines of steps up to `step` (a killed run may have logged more, or half a line)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("step", math.inf) <= step:
            kept.append(line)
    atomic_write_text(path, "".join(f"{line}\n" for line in kept))


def _all_mean(value: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        value = value.clone()
        dist.all_reduce(value)
        value /= world
    return value


class _Writer:
    """Rank 0's outputs: metrics.jsonl (one line per optimizer step) and TensorBoard scalars."""

    def __init__(self, out: Path, tensorboard: bool):
        self.path = out / "metrics.jsonl"
        self.fh = open(self.path, "a")
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                print("tensorboard is not installed; scalars go to metrics.jsonl only", flush=True)
            else:
                self.tb = SummaryWriter(str(out / "tensorboard"))

    def write(self, record: dict) -> None:
        self.fh.write(json.dumps(record) + "\n")
        self.fh.flush()
        if self.tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.tb.add_scalar(key, value, record["step"])

    def close(self) -> None:
        self.fh.close()
        if self.tb is not None:
            self.tb.close()


@dataclass
class TrainState:
    """What a checkpoint restores: the model and optimizer (sharded over the ranks), the learning
    rate schedule, the loader's position, and the optimizer steps done."""

    model: InternLM2ForCausalLM
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loader: TokenLoader
    step: int = 0


class Trainer:
    """One rank's run, in named steps: `build` makes it (from the newest checkpoint with `resume`),
    `fit` runs `train_step` to the last step, with `evaluate` and `save` on their schedules;
    `state_dict` is what a checkpoint holds, and `load` restores one."""

    state: TrainState
    model_cfg: ModelConfig
    checkpoints: CheckpointManager
    train_model: torch.nn.Module  # the model, or its DDP wrapper
    batches: Iterator[Batch]  # the loader's, from its position on
    valid: list[Batch] | None  # held-out batches for the validation loss
    last_saved: int  # the step of the newest checkpoint written or loaded

    def __init__(self, cfg: TrainConfig, out: Path, total_steps: int, *, rank: int, world: int, device: torch.device):
        self.accumulation = cfg.accumulation(world)  # before any work: the batch numbers must divide,
        self.mesh_shape = cfg.parallel.mesh_shape(world)  # and HSDP's groups must split the ranks
        self.cfg, self.out, self.total_steps = cfg, out, total_steps
        self.rank, self.world, self.device = rank, world, device
        self.kind = strategy(cfg.parallel, world)
        self.autocast = _autocast(cfg, device)
        self.tokens_per_step = cfg.global_batch_size * cfg.data.seq_len
        self.source_names = source_names(cfg.data)

    def build(self, data: str | None, resume: bool) -> None:
        """The data, model, optimizer, schedule and checkpoint manager; with `resume`, restored
        from the newest complete checkpoint. Rank 0 also prepares the output folder."""
        cfg, out = self.cfg, self.out
        out.mkdir(parents=True, exist_ok=True)
        folder = cfg.checkpoint.folder or str(out / "checkpoints")
        if not resume and complete_steps(folder):
            raise FileExistsError(
                f"{folder} holds checkpoints of an earlier run: continue it with --resume auto, "
                "or train into a new --out"
            )
        dataset = open_training_data(cfg.data, data, rank=self.rank, world_size=self.world)
        loader = TokenLoader(dataset, cfg.micro_batch_size, drop_last=True)
        vocab_size = vocab_size_of(dataset)
        self.model_cfg = cfg.model_config_for(vocab_size)
        if vocab_size > self.model_cfg.vocab_size:
            raise ValueError(
                f"the shards' tokenizer has {vocab_size} ids, the model's vocabulary "
                f"{self.model_cfg.vocab_size}; set model.overrides.vocab_size (or 'auto')"
            )
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        model = InternLM2ForCausalLM(self.model_cfg).to(self.device)
        checkpoint_layers(model, cfg.parallel.activation_checkpointing)
        if cfg.compile:
            compile_layers(model)
        if self.kind == "fsdp":
            shard(model, _bf16(cfg, self.device), self.mesh_shape, self.device)
        optimizer = adamw(model, cfg.optim)
        self.state = TrainState(model, optimizer, scheduler(optimizer, cfg.optim, self.total_steps), loader)
        self.batches = loader.cycle()
        # the checkpoint's collectives run on a group of their own, beside the training's
        self.checkpoints = CheckpointManager(
            folder,
            rank=self.rank,
            world_size=self.world,
            keep=cfg.checkpoint.keep,
            asynchronous=cfg.checkpoint.asynchronous,
            group=dist.new_group(backend="gloo") if self.world > 1 else None,
        )
        latest = self.checkpoints.latest_step() if resume else None
        if latest is not None:
            self.load(latest)
        self.last_saved = self.state.step
        if self.rank == 0:
            (out / FINISHED).unlink(missing_ok=True)
            if resume:
                self.checkpoints.discard_incomplete()
            _truncate_metrics(out / "metrics.jsonl", self.state.step)
            atomic_write_text(out / "train.yaml", yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
            print(
                f"training {self.model_cfg.num_params() / 1e6:.1f}M parameters on {self.world} x {self.device.type}, "
                f"steps {self.state.step}->{self.total_steps}"
                + (f" (resumed from step {self.state.step})" if latest is not None else ""),
                flush=True,
            )
        if self.world > 1:
            dist.barrier()
        self.train_model = DistributedDataParallel(model) if self.kind == "ddp" else model
        self.valid = self._held_out()

    def _held_out(self) -> list[Batch] | None:
        """The held-out shards' first `valid_batches` batches, unshuffled: the same every time."""
        data = self.cfg.data
        if not (data.valid and data.valid_every):
            return None
        dataset = TokenDataset(
            data.valid,
            data.seq_len,
            seed=0,
            shuffle=False,
            rank=self.rank,
            world_size=self.world,
            document_masking=data.document_masking,
        )
        return list(islice(TokenLoader(dataset, self.cfg.micro_batch_size, drop_last=True).cycle(), data.valid_batches))

    def state_dict(self) -> tuple[dict, dict | None, dict]:
        """A checkpoint's parts on this rank: the sharded model and optimizer; the step, schedule
        and model config (rank 0's, None on the others); the rank's loader position and RNG."""
        s = self.state
        trainer = None
        if self.rank == 0:
            trainer = {
                "step": s.step,
                "scheduler": s.scheduler.state_dict(),
                "model_config": self.model_cfg.model_dump_json(),
            }
        return sharded_state(s.model, s.optimizer), trainer, {"loader": s.loader.state_dict(), "rng": rng_state()}

    def load(self, step: int) -> None:
        """Restore the state of checkpoint `step`, whatever the number of ranks that wrote it."""
        s = self.state
        sharded = sharded_state(s.model, s.optimizer)
        trainer, own = self.checkpoints.load(step, sharded)
        load_sharded_state(s.model, s.optimizer, sharded)
        s.scheduler.load_state_dict(trainer["scheduler"])
        s.loader.load_state_dict(own["loader"])
        set_rng_state(own["rng"])
        s.step = int(trainer["step"])
        self.batches = s.loader.cycle()

    def train_step(self) -> dict:
        """One optimizer step over `accumulation` micro-batches; returns its figures for the log."""
        cfg, s = self.cfg, self.state
        loss_sum = torch.zeros((), device=self.device)
        for micro in range(self.accumulation):
            batch = to_device(next(self.batches), self.device)
            with set_gradient_sync(self.train_model, micro == self.accumulation - 1, self.kind), self.autocast:
                loss = self.train_model(
                    batch["input_ids"],
                    batch.get("position_ids"),
                    labels=batch["labels"],
                    loss_chunk_tokens=cfg.loss_chunk_tokens,
                )
            (loss / self.accumulation).backward()
            loss_sum += loss.detach()
        loss_value = float(_all_mean(loss_sum / self.accumulation, self.world))
        if not math.isfinite(loss_value):
            raise NonFiniteLoss(f"non-finite loss {loss_value} at step {s.step + 1}")
        grad_norm = clip_gradients(s.model, cfg.optim.clip_grad)
        if not math.isfinite(grad_norm):
            raise NonFiniteLoss(f"non-finite gradient norm {grad_norm} at step {s.step + 1}")
        lr = s.optimizer.param_groups[0]["lr"]
        s.optimizer.step()
        s.scheduler.step()
        s.optimizer.zero_grad(set_to_none=True)
        s.step += 1
        record = {
            "step": s.step,
            "loss": loss_value,
            "lr": lr,
            "grad_norm": grad_norm,
            "tokens": s.step * self.tokens_per_step,
        }
        position = s.loader.state_dict()
        if "counts" in position:  # a mixture: tokens drawn from each source so far, over all ranks
            counts = zip(self.source_names, position["counts"])
            record.update({f"tokens/{name}": n * cfg.data.seq_len for name, n in counts})
        else:
            record["epoch"] = position["epoch"]
        return record

    @torch.no_grad()
    def evaluate(self) -> float:
        """The mean loss over the held-out batches and the ranks."""
        assert self.valid is not None, "no held-out data: data.valid and data.valid_every"
        model = self.state.model
        model.eval()
        total = torch.zeros((), device=self.device)
        for batch in self.valid:
            batch = to_device(batch, self.device)
            with self.autocast:
                total += model(
                    batch["input_ids"],
                    batch.get("position_ids"),
                    labels=batch["labels"],
                    loss_chunk_tokens=self.cfg.loss_chunk_tokens,
                )
        model.train()
        return float(_all_mean(total / len(self.valid), self.world))

    def save(self) -> None:
        """A checkpoint of the step just done (written in the background when asynchronous)."""
        self.checkpoints.save(self.state.step, *self.state_dict())
        self.last_saved = self.state.step

    def fit(self) -> dict:
        """Train to `total_steps`, rank 0 logging every step; evaluate and checkpoint on schedule,
        and on SIGTERM checkpoint and stop; then export the model. Returns a summary."""
        cfg, s = self.cfg, self.state
        writer = _Writer(self.out, cfg.tensorboard) if self.rank == 0 else None
        step_flops = flops_per_token(self.model_cfg, cfg.data.seq_len) * self.tokens_per_step / self.world
        peak = peak_flops(self.device)
        s.model.train()
        stop = _StopOnSigterm()
        try:
            while s.step < self.total_steps:
                started = time.perf_counter()
                record = self.train_step()
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                seconds = time.perf_counter() - started
                record["tokens_per_s"] = self.tokens_per_step / seconds
                record["tflops_per_device"] = step_flops / seconds / 1e12
                if peak is not None:
                    record["mfu"] = step_flops / seconds / peak
                record["peak_memory_gib"] = peak_memory_gib(self.device)
                if self.valid is not None and s.step % cfg.data.valid_every == 0:
                    record["valid_loss"] = self.evaluate()
                # The line goes out before the checkpoint: a checkpoint never runs ahead of the log.
                if writer is not None:
                    writer.write(record)
                    if s.step % cfg.log_every == 0:
                        print(
                            f"step {s.step} loss {record['loss']:.4f} lr {record['lr']:.3g} "
                            f"grad_norm {record['grad_norm']:.3f} tok/s {record['tokens_per_s']:.0f}",
                            flush=True,
                        )
                preempted = stop.agreed(self.world, self.device)
                if s.step % cfg.checkpoint.every == 0 or s.step == self.total_steps or preempted:
                    self.save()
                if preempted:
                    self.checkpoints.wait()
                    raise Preempted(f"stopped by SIGTERM after step {s.step}; checkpoint written")
            self.checkpoints.wait()
        finally:
            stop.restore()
            if writer is not None:
                writer.close()
        self._export()
        return {"step": s.step, "last_checkpoint": self.last_saved, "params": self.model_cfg.num_params()}

    def _export(self) -> None:
        """The trained weights, unsharded, as a Hugging Face folder beside the run, and the mark
        that it finished (rank 0); gathering the shards takes every rank."""
        model_state = full_model_state(self.state.model)
        if self.rank == 0:
            exported = InternLM2ForCausalLM(self.model_cfg)
            exported.load_state_dict(model_state)
            save_hf(exported, self.out / "hf")
            atomic_write_text(self.out / FINISHED, json.dumps({"step": self.state.step, "time": time.time()}) + "\n")


def train(
    cfg: TrainConfig, data: str | None, out: str | os.PathLike, *, max_steps: int | None = None, resume: bool = False
) -> dict:
    """Train until `max_steps` optimizer steps (default: the config's); returns a summary."""
    device_kind = "cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()) else "cpu"
    rank, world, local_rank = _init_distributed(device_kind)
    device = _device(cfg, local_rank)
    try:
        trainer = Trainer(cfg, Path(out), max_steps or cfg.max_steps, rank=rank, world=world, device=device)
        trainer.build(data, resume)
        return trainer.fit()
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
