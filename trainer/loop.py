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
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import threading
import time
from contextlib import nullcontext
from itertools import islice
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch.nn.parallel import DistributedDataParallel

from refinery.loaders import TokenDataset, TokenLoader
from refinery.trainer.checkpoint import CheckpointManager, atomic_write_text, complete_steps
from refinery.trainer.config import TrainConfig
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


@torch.no_grad()
def validation_loss(model, batches: list[dict], device, autocast, world: int, loss_chunk_tokens: int) -> float:
    model.eval()
    total = torch.zeros((), device=device)
    for batch in batches:
        batch = to_device(batch, device)
        with autocast:
            total += model(
                batch["input_ids"],
                batch.get("position_ids"),
                labels=batch["labels"],
                loss_chunk_tokens=loss_chunk_tokens,
            )
    model.train()
    return float(_all_mean(total / len(batches), world))


def train(
    cfg: TrainConfig, data: str, out: str | os.PathLike, *, max_steps: int | None = None, resume: bool = False
) -> dict:
    """Train until `max_steps` optimizer steps (default: the config's); returns a summary."""
    out = Path(out)
    total_steps = max_steps or cfg.max_steps
    device_kind = "cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()) else "cpu"
    rank, world, local_rank = _init_distributed(device_kind)
    device = _device(cfg, local_rank)
    try:
        return _train(cfg, data, out, total_steps, resume, rank, world, device)
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg, data, out, total_steps, resume, rank, world, device) -> dict:
    accumulation = cfg.accumulation(world)  # before any work: the batch numbers must divide,
    mesh_shape = cfg.parallel.mesh_shape(world)  # and HSDP's groups must split the ranks
    out.mkdir(parents=True, exist_ok=True)
    checkpoints = cfg.checkpoint.folder or str(out / "checkpoints")
    if not resume and complete_steps(checkpoints):
        raise FileExistsError(
            f"{checkpoints} holds checkpoints of an earlier run: continue it with --resume auto, "
            f"or train into a new --out"
        )
    dataset = open_training_data(cfg.data, data, rank=rank, world_size=world)
    loader = TokenLoader(dataset, cfg.micro_batch_size, drop_last=True)
    model_cfg = cfg.model_config_for(vocab_size_of(dataset))
    if vocab_size_of(dataset) > model_cfg.vocab_size:
        raise ValueError(
            f"the shards' tokenizer has {vocab_size_of(dataset)} ids, the model's vocabulary "
            f"{model_cfg.vocab_size}; set model.overrides.vocab_size (or 'auto')"
        )
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    model = InternLM2ForCausalLM(model_cfg).to(device)
    kind = strategy(cfg.parallel, world)
    checkpoint_layers(model, cfg.parallel.activation_checkpointing)
    if cfg.compile:
        compile_layers(model)
    if kind == "fsdp":
        shard(model, _bf16(cfg, device), mesh_shape, device)
    optimizer = adamw(model, cfg.optim)
    sched = scheduler(optimizer, cfg.optim, total_steps)
    # the checkpoint's collectives run on a group of their own, beside the training's
    ckpt = CheckpointManager(
        checkpoints,
        rank=rank,
        world_size=world,
        keep=cfg.checkpoint.keep,
        asynchronous=cfg.checkpoint.asynchronous,
        group=dist.new_group(backend="gloo") if world > 1 else None,
    )
    step = 0
    latest = ckpt.latest_step() if resume else None
    if latest is not None:
        state = sharded_state(model, optimizer)
        trainer_state, own = ckpt.load(latest, state)
        load_sharded_state(model, optimizer, state)
        sched.load_state_dict(trainer_state["scheduler"])
        loader.load_state_dict(own["loader"])
        set_rng_state(own["rng"])
        step = int(trainer_state["step"])
    if rank == 0:
        (out / FINISHED).unlink(missing_ok=True)
        if resume:
            ckpt.discard_incomplete()
        _truncate_metrics(out / "metrics.jsonl", step)
        atomic_write_text(out / "train.yaml", yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
        print(
            f"training {model_cfg.num_params() / 1e6:.1f}M parameters on {world} x {device.type}, "
            f"steps {step}->{total_steps}" + (f" (resumed from step {step})" if latest is not None else ""),
            flush=True,
        )
    if world > 1:
        dist.barrier()

    train_model = DistributedDataParallel(model) if kind == "ddp" else model
    autocast = _autocast(cfg, device)
    valid = None
    if cfg.data.valid and cfg.data.valid_every:
        held_out = TokenLoader(
            TokenDataset(
                cfg.data.valid,
                cfg.data.seq_len,
                seed=0,
                shuffle=False,
                rank=rank,
                world_size=world,
                document_masking=cfg.data.document_masking,
            ),
            cfg.micro_batch_size,
            drop_last=True,
        )
        valid = list(islice(held_out.cycle(), cfg.data.valid_batches))
    writer = _Writer(out, cfg.tensorboard) if rank == 0 else None
    tokens_per_step = cfg.global_batch_size * cfg.data.seq_len
    names = source_names(cfg.data)
    step_flops = flops_per_token(model_cfg, cfg.data.seq_len) * tokens_per_step / world
    peak = peak_flops(device)
    last_saved = step
    model.train()
    batches = loader.cycle()
    stop = _StopOnSigterm()
    try:
        while step < total_steps:
            started = time.perf_counter()
            loss_sum = torch.zeros((), device=device)
            for micro in range(accumulation):
                batch = to_device(next(batches), device)
                with set_gradient_sync(train_model, micro == accumulation - 1, kind), autocast:
                    loss = train_model(
                        batch["input_ids"],
                        batch.get("position_ids"),
                        labels=batch["labels"],
                        loss_chunk_tokens=cfg.loss_chunk_tokens,
                    )
                (loss / accumulation).backward()
                loss_sum += loss.detach()
            loss_value = float(_all_mean(loss_sum / accumulation, world))
            if not math.isfinite(loss_value):
                raise NonFiniteLoss(f"non-finite loss {loss_value} at step {step + 1}")
            grad_norm = clip_gradients(model, cfg.optim.clip_grad)
            if not math.isfinite(grad_norm):
                raise NonFiniteLoss(f"non-finite gradient norm {grad_norm} at step {step + 1}")
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            sched.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            record = {
                "step": step,
                "loss": loss_value,
                "lr": lr,
                "grad_norm": grad_norm,
                "tokens": step * tokens_per_step,
            }
            position = loader.state_dict()
            if "counts" in position:  # a mixture: tokens drawn from each source so far, over all ranks
                record.update({f"tokens/{name}": n * cfg.data.seq_len for name, n in zip(names, position["counts"])})
            else:
                record["epoch"] = position["epoch"]
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - started
            record["tokens_per_s"] = tokens_per_step / seconds
            record["tflops_per_device"] = step_flops / seconds / 1e12
            if peak is not None:
                record["mfu"] = step_flops / seconds / peak
            record["peak_memory_gib"] = peak_memory_gib(device)
            if valid is not None and step % cfg.data.valid_every == 0:
                record["valid_loss"] = validation_loss(model, valid, device, autocast, world, cfg.loss_chunk_tokens)
            # The line goes out before the checkpoint: a checkpoint never runs ahead of the log.
            if writer is not None:
                writer.write(record)
                if step % cfg.log_every == 0:
                    print(
                        f"step {step} loss {loss_value:.4f} lr {lr:.3g} grad_norm {grad_norm:.3f} "
                        f"tok/s {record['tokens_per_s']:.0f}",
                        flush=True,
                    )
            preempted = stop.agreed(world, device)
            if step % cfg.checkpoint.every == 0 or step == total_steps or preempted:
                _save(ckpt, step, model, optimizer, sched, loader, rank, model_cfg)
                last_saved = step
            if preempted:
                ckpt.wait()
                raise Preempted(f"stopped by SIGTERM after step {step}; checkpoint written")
        ckpt.wait()
    finally:
        stop.restore()
        if writer is not None:
            writer.close()
    model_state = full_model_state(model)  # collective with several ranks: every rank
    if rank == 0:
        exported = InternLM2ForCausalLM(model_cfg)  # the trained weights, unsharded
        exported.load_state_dict(model_state)
        save_hf(exported, out / "hf")
        atomic_write_text(out / FINISHED, json.dumps({"step": step, "time": time.time()}) + "\n")
    return {"step": step, "last_checkpoint": last_saved, "params": model_cfg.num_params()}


def _save(ckpt, step, model, optimizer, sched, loader, rank, model_cfg) -> None:
    trainer = None
    if rank == 0:
        trainer = {"step": step, "scheduler": sched.state_dict(), "model_config": model_cfg.model_dump_json()}
    ckpt.save(step, sharded_state(model, optimizer), trainer, {"loader": loader.state_dict(), "rng": rng_state()})
