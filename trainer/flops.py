"""Model FLOPs per token and the dense bf16 peaks of current NVIDIA parts, for TFLOP/s and MFU.

FLOPs follow the PaLM paper's accounting (appendix B): 6 x the non-embedding parameters (the
forward and backward matmuls) plus 12 x layers x hidden x sequence length (attention scores and
their backward), per token. Peaks are the vendors' dense (no sparsity) bf16 tensor-core figures.
"""

from __future__ import annotations

import resource

import torch

from refinery.trainer.config import ModelConfig

# Checked in order, first match wins: a more specific name before the name it contains.
PEAK_BF16 = [
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),
    ("H200", 989e12),
    ("H800", 989e12),
    ("B200", 2250e12),
    ("B100", 1750e12),
    ("GB200", 2500e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("L4", 121e12),
    ("A10", 125e12),
]


def flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    non_embedding = cfg.num_params() - cfg.vocab_size * cfg.hidden_size
    return 6 * non_embedding + 12 * cfg.num_hidden_layers * cfg.hidden_size * seq_len


def peak_flops(device: torch.device) -> float | None:
    """The device's dense bf16 peak in FLOP/s; None for a CPU or a part not in the table."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for part, peak in PEAK_BF16 if part in name), None)


def peak_memory_gib(device: torch.device) -> float:
    """The most memory held so far: allocated on the GPU, or this process's peak resident set on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
