"""How the model is spread over ranks: FSDP2 (`fully_shard` per decoder layer and for the whole
model) or DDP, activation checkpointing per layer, and the state dicts of
`torch.distributed.checkpoint.state_dict`: sharded ones for checkpoints (each rank its own part,
resharded when read) and the whole state for the export.

With FSDP each rank holds 1/world of the parameters, gradients and AdamW state; a layer's
parameters are all-gathered just before it runs and its gradients reduce-scattered after. On a
device with bf16, parameters and compute are bf16 and gradients are reduced in float32, while the
sharded master parameters and the optimizer state stay float32.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)
from torch.utils.checkpoint import checkpoint

from refinery.trainer.config import ParallelConfig

FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def strategy(cfg: ParallelConfig, world: int) -> str:
    """ "single", "ddp" or "fsdp": FSDP by default when there is more than one rank."""
    if world == 1:
        return "single"
    return "fsdp" if cfg.strategy == "auto" else cfg.strategy


class _Checkpointed(nn.Module):
    """A decoder layer whose activations are recomputed in the backward pass instead of kept."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, *args):
        return checkpoint(self.layer, *args, use_reentrant=False)


def checkpoint_layers(model: nn.Module, mode: str) -> None:
    """`full`: every decoder layer; `selective`: every second one (half the recomputation)."""
    if mode == "none":
        return
    layers = model.model.layers
    for i in range(len(layers)):
        if mode == "full" or i % 2 == 0:
            layers[i] = _Checkpointed(layers[i])


def shard(model: nn.Module, bf16: bool, mesh_shape: tuple[int, int] | None, device: torch.device) -> nn.Module:
    """FSDP2 per decoder layer and for the whole model, over every rank or, with `mesh_shape`
    (replicate, shard), HSDP on a 2-D mesh."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(device.type, mesh_shape, mesh_dim_names=("replicate", "shard")) if mesh_shape else None
    policy = (
        MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else MixedPrecisionPolicy()
    )
    for layer in model.model.layers:
        fully_shard(layer, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return model


def compile_layers(model: nn.Module) -> None:
    """torch.compile each decoder layer on its own (one graph reused by all of them), leaving the
    FSDP collectives between layers outside the graphs."""
    layers = model.model.layers
    for i in range(len(layers)):
        layers[i] = torch.compile(layers[i])


def full_model_state(model: nn.Module) -> dict:
    """The whole model state on CPU under the plain parameter names (the export). Collective with
    several ranks (every rank calls it); rank 0 gets the state, the others an empty dict."""
    return {_name(k): v for k, v in get_model_state_dict(model, options=FULL).items()}


def sharded_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """This rank's part of the model and optimizer state (DTensor shards under FSDP, whole tensors
    otherwise) under the plain parameter names, for torch.distributed.checkpoint; an optimizer
    that has not stepped yet gets its state initialized, so a checkpoint can be loaded into it."""
    model_state, optim_state = _renamed(*get_state_dict(model, optimizer), _name)
    return {"model": model_state, "optimizer": optim_state}


def load_sharded_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Set a `sharded_state` (filled from a checkpoint) into the model and optimizer."""
    names = {_name(n): n for n in _names(model)}
    model_state, optim_state = _renamed(state["model"], state["optimizer"], names.__getitem__)
    set_state_dict(model, optimizer, model_state_dict=model_state, optim_state_dict=optim_state)


def _renamed(model_state: dict, optim_state: dict, rename) -> tuple[dict, dict]:
    """Both state dicts with every parameter name passed through `rename`."""
    return (
        {rename(k): v for k, v in model_state.items()},
        {
            **optim_state,
            "state": {rename(k): v for k, v in optim_state["state"].items()},
            "param_groups": [{**g, "params": [rename(p) for p in g["params"]]} for g in optim_state["param_groups"]],
        },
    )


def clip_gradients(model: nn.Module, max_norm: float) -> float:
    """Clip the global gradient norm (over every rank's shards under FSDP); the norm before clipping."""
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)


def set_gradient_sync(model: nn.Module, sync: bool, kind: str):
    """A context for one micro-batch: under DDP `no_sync` unless it is the last; under FSDP the
    reduce-scatter is switched the same way."""
    from contextlib import nullcontext

    if kind == "ddp" and not sync:
        return model.no_sync()
    if kind == "fsdp":
        model.set_requires_gradient_sync(sync)
    return nullcontext()


def _name(key: str) -> str:
    return key.replace(".layer.", ".").replace("_orig_mod.", "")


def _names(model: nn.Module) -> list[str]:
    return [n for n, _ in model.named_parameters()] + [n for n, _ in model.named_buffers()]
