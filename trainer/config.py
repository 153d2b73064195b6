"""Model shapes and training settings, validated before any work starts.

The model presets carry the published InternLM2 shapes; a training config (YAML under
conf/train/) names a preset, may override fields of it, and sets the optimizer, schedule,
batch and checkpoint policy. Errors name the file, the key and the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from refinery.pipeline.core import ConfigError, Strict


class RopeScaling(Strict):
    """Dynamic NTK: past `max_position_embeddings` the RoPE base grows with the sequence."""

    type: Literal["dynamic"] = "dynamic"
    factor: float = Field(default=2.0, gt=1.0)


class ModelConfig(Strict):
    vocab_size: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    num_hidden_layers: int = Field(gt=0)
    num_attention_heads: int = Field(gt=0)
    num_key_value_heads: int = Field(gt=0)
    intermediate_size: int = Field(gt=0)
    rms_norm_eps: float = 1e-5
    rope_theta: float = 1e6
    max_position_embeddings: int = 32768
    rope_scaling: RopeScaling | None = RopeScaling()
    bias: bool = False
    initializer_range: float = 0.02
    bos_token_id: int = 1
    eos_token_id: int = 2
    pad_token_id: int = 2

    @model_validator(mode="after")
    def _heads_divide(self):
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("hidden_size must be a multiple of num_attention_heads")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        if (self.hidden_size // self.num_attention_heads) % 2:
            raise ValueError("head dimension must be even for RoPE")
        return self

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def kv_groups(self) -> int:
        return self.num_attention_heads // self.num_key_value_heads

    def num_params(self) -> int:
        h, d = self.hidden_size, self.head_dim
        qkv = h * (self.num_attention_heads + 2 * self.num_key_value_heads) * d
        attn = qkv + self.num_attention_heads * d * h
        if self.bias:
            attn += (self.num_attention_heads + 2 * self.num_key_value_heads) * d + h
        ffn = 3 * h * self.intermediate_size
        layer = attn + ffn + 2 * h
        return 2 * self.vocab_size * h + self.num_hidden_layers * layer + h


# Published InternLM2 shapes (vocab 92544, RMSNorm eps 1e-5, rope_theta 1e6, 32k positions with
# dynamic NTK factor 2.0). `tiny` is for CPU tests; its vocabulary usually comes from the shards.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        vocab_size=92544,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=176,
        max_position_embeddings=2048,
    ),
    "1.8B": dict(
        vocab_size=92544,
        hidden_size=2048,
        num_hidden_layers=24,
        num_attention_heads=16,
        num_key_value_heads=8,
        intermediate_size=8192,
    ),
    "7B": dict(
        vocab_size=92544,
        hidden_size=4096,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        intermediate_size=14336,
    ),
    "20B": dict(
        vocab_size=92544,
        hidden_size=6144,
        num_hidden_layers=48,
        num_attention_heads=48,
        num_key_value_heads=8,
        intermediate_size=16384,
    ),
}


def preset(name: str, **overrides) -> ModelConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; known: {sorted(PRESETS)}")
    return ModelConfig(**{**PRESETS[name], **overrides})


class ModelSection(Strict):
    preset: str
    # `vocab_size: auto` takes the vocabulary from the shard manifest's tokenizer.
    overrides: dict[str, Any] = {}

    @model_validator(mode="after")
    def _known(self):
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; known: {sorted(PRESETS)}")
        unknown = set(self.overrides) - set(ModelConfig.model_fields)
        if unknown:
            raise ValueError(f"unknown model fields {sorted(unknown)}")
        return self


class OptimConfig(Strict):
    """AdamW as in the InternLM2 report: betas (0.9, 0.95), eps 1e-8, weight decay 0.1."""

    lr: float = Field(default=3e-4, gt=0)
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.1
    warmup_steps: int = Field(default=100, ge=0)
    # Cosine decay ends at this fraction of the peak learning rate.
    min_lr_ratio: float = Field(default=0.1, ge=0, le=1)
    clip_grad: float = Field(default=1.0, gt=0)


class CheckpointConfig(Strict):
    every: int = Field(default=100, gt=0)
    keep: int = Field(default=3, gt=0)
    # Snapshot to memory, write in a background thread while training continues.
    asynchronous: bool = True
    # A local folder or an object-store URI (s3://bucket/run/checkpoints); default OUT/checkpoints.
    folder: str | None = None


class DataSource(Strict):
    """One shard folder (path or URI) of a weighted mixture; weights are shares of tokens."""

    path: str
    weight: float = Field(gt=0)
    # The name its token count is logged under (default: the folder's name).
    name: str | None = None


class DataConfig(Strict):
    # A weighted mixture of shard folders instead of the one `--data` names.
    sources: list[DataSource] | None = Field(default=None, min_length=1)
    seq_len: int = Field(default=2048, gt=0)
    seed: int = 0
    shuffle: bool = True
    # Positions restart and attention stops at document boundaries inside a packed window.
    document_masking: bool = True
    # Held-out shard folder for periodic validation loss (optional).
    valid: str | None = None
    valid_every: int = Field(default=0, ge=0)
    valid_batches: int = Field(default=8, gt=0)


class ParallelConfig(Strict):
    # auto: FSDP2 (fully_shard per decoder layer and for the model) with more than one rank.
    strategy: Literal["auto", "fsdp", "ddp"] = "auto"
    # Recompute decoder layers' activations in the backward pass: every layer, or every second.
    activation_checkpointing: Literal["none", "full", "selective"] = "none"
    # HSDP: the ranks form `replicate` groups, each holding the whole model sharded over its ranks
    # (a 2-D device mesh, replicate x shard: parameters gathered within a group, gradients also
    # averaged across groups); 1 = FSDP over every rank.
    replicate: int = Field(default=1, gt=0)

    def mesh_shape(self, ranks: int) -> tuple[int, int] | None:
        """(replicate, shard) for HSDP, None for one flat mesh; ValueError when it does not divide."""
        if self.replicate == 1:
            return None
        if ranks % self.replicate:
            raise ValueError(f"parallel.replicate {self.replicate} does not divide {ranks} ranks")
        return self.replicate, ranks // self.replicate


class TrainConfig(Strict):
    model: ModelSection
    parallel: ParallelConfig = ParallelConfig()
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    # Sequences per optimizer step over all ranks; each rank accumulates
    # global_batch_size / (micro_batch_size x ranks) micro-batches (`accumulation`).
    global_batch_size: int = Field(default=4, gt=0)
    micro_batch_size: int = Field(default=4, gt=0)
    # The loss is computed over this many tokens at a time (their float32 logits only, recomputed
    # in the backward pass); 0 computes it over the whole micro-batch at once.
    loss_chunk_tokens: int = Field(default=4096, ge=0)
    max_steps: int = Field(default=1000, gt=0)
    seed: int = 0
    # auto: bfloat16 autocast on CUDA devices that support it, float32 otherwise.
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # torch.compile each decoder layer (one graph for all of them; FSDP's collectives stay outside).
    compile: bool = False
    log_every: int = Field(default=1, gt=0)
    tensorboard: bool = True

    @model_validator(mode="after")
    def _batch_divides(self):
        if self.global_batch_size % self.micro_batch_size:
            raise ValueError(
                f"global_batch_size {self.global_batch_size} is not a multiple of micro_batch_size "
                f"{self.micro_batch_size}"
            )
        return self

    def accumulation(self, ranks: int) -> int:
        """Micro-batches per rank and optimizer step; ValueError when the numbers do not divide."""
        per_pass = self.micro_batch_size * ranks
        if self.global_batch_size % per_pass:
            raise ValueError(
                f"global_batch_size {self.global_batch_size} is not a multiple of micro_batch_size "
                f"{self.micro_batch_size} x {ranks} ranks"
            )
        return self.global_batch_size // per_pass

    def model_config_for(self, vocab_size: int | None) -> ModelConfig:
        overrides = dict(self.model.overrides)
        if overrides.get("vocab_size") == "auto":
            if vocab_size is None:
                raise ValueError("model.overrides.vocab_size is 'auto' but the data has no vocabulary size")
            overrides["vocab_size"] = vocab_size
        return preset(self.model.preset, **overrides)


def load_train_config(path: str | Path) -> TrainConfig:
    path = str(path)
    try:
        with open(path) as fh:
            raw = yaml.safe_load(fh)
    except OSError as exc:
        raise ConfigError(path, "-", f"cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(path, "-", f"invalid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(path, "-", "a training config is a mapping")
    try:
        return TrainConfig(**raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "-"
        raise ConfigError(path, key, err["msg"]) from exc
