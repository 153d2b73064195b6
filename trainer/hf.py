"""Hugging Face folders: save and load InternLM2 checkpoints, and export them in the LLaMA layout.

The InternLM2 folder has the published `config.json` field names and safetensors weights under
the official parameter names, so public checkpoints load into our model and ours load into theirs.
The LLaMA export follows InternLM's convert2llama mapping: `wqkv` is split per key/value group
into `q_proj`/`k_proj`/`v_proj` (no RoPE permutation: both use rotate-half), the other weights
are renamed, and the result loads with `transformers.LlamaForCausalLM`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from refinery.trainer.config import ModelConfig
from refinery.trainer.model import InternLM2ForCausalLM

SHARD_BYTES = 5 << 30
_CONFIG_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
    "rms_norm_eps",
    "rope_theta",
    "max_position_embeddings",
    "bias",
    "initializer_range",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
)


def internlm2_config_dict(cfg: ModelConfig, dtype: torch.dtype) -> dict:
    out = {
        "architectures": ["InternLM2ForCausalLM"],
        "model_type": "internlm2",
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "use_cache": True,
        "torch_dtype": str(dtype).removeprefix("torch."),
    }
    out.update({k: getattr(cfg, k) for k in _CONFIG_FIELDS})
    out["rope_scaling"] = cfg.rope_scaling.model_dump() if cfg.rope_scaling else None
    return out


def config_from_dict(raw: dict) -> ModelConfig:
    fields = {k: raw[k] for k in _CONFIG_FIELDS if k in raw}
    if fields.get("num_key_value_heads") is None:
        fields["num_key_value_heads"] = raw["num_attention_heads"]
    scaling = raw.get("rope_scaling")
    if scaling:
        kind = scaling.get("type", scaling.get("rope_type"))
        if kind != "dynamic":
            raise ValueError(f"unsupported rope_scaling type {kind!r}; InternLM2 uses 'dynamic'")
        fields["rope_scaling"] = {"type": "dynamic", "factor": scaling["factor"]}
    else:
        fields["rope_scaling"] = None
    return ModelConfig(**fields)


def _write_weights(tensors: dict[str, torch.Tensor], folder: Path) -> None:
    """One `model.safetensors`, or shards plus `model.safetensors.index.json` past SHARD_BYTES."""
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > SHARD_BYTES:
            shards.append({})
            size = 0
        shards[-1][name] = t.contiguous()
        size += nbytes
    meta = {"format": "pt"}
    if len(shards) == 1:
        save_file(shards[0], folder / "model.safetensors", metadata=meta)
        return
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        fname = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, folder / fname, metadata=meta)
        weight_map.update({k: fname for k in shard})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def read_weights(folder: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All tensors of a folder: safetensors (single or indexed) or PyTorch `.bin` (single or indexed)."""
    folder = Path(folder)
    for single, index in (
        ("model.safetensors", "model.safetensors.index.json"),
        ("pytorch_model.bin", "pytorch_model.bin.index.json"),
    ):
        files = []
        if (folder / single).exists():
            files = [folder / single]
        elif (folder / index).exists():
            weight_map = json.loads((folder / index).read_text())["weight_map"]
            files = [folder / f for f in sorted(set(weight_map.values()))]
        if files:
            out = {}
            for f in files:
                out.update(
                    load_file(f) if f.suffix == ".safetensors" else torch.load(f, map_location="cpu", weights_only=True)
                )
            return out
    raise FileNotFoundError(f"{folder}: no model.safetensors or pytorch_model.bin (or their index)")


def save_hf(model: InternLM2ForCausalLM, folder: str | os.PathLike, dtype: torch.dtype | None = None) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: (v.to(dtype) if dtype else v).detach().cpu() for k, v in model.state_dict().items()}
    dtype = next(iter(state.values())).dtype
    _write_weights(state, folder)
    cfg = internlm2_config_dict(model.cfg, dtype)
    (folder / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    return folder


def load_hf(folder: str | os.PathLike, dtype: torch.dtype = torch.float32) -> InternLM2ForCausalLM:
    folder = Path(folder)
    cfg = config_from_dict(json.loads((folder / "config.json").read_text()))
    with torch.device("meta"):
        model = InternLM2ForCausalLM(cfg)
    state = read_weights(folder)
    model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True, assign=True)
    return model


# InternLM2 name (inside `model.layers.N.`) -> LLaMA name, as in convert2llama.
_LAYER_RENAMES = {
    "attention.wo.": "self_attn.o_proj.",
    "feed_forward.w1.": "mlp.gate_proj.",
    "feed_forward.w3.": "mlp.up_proj.",
    "feed_forward.w2.": "mlp.down_proj.",
    "attention_norm.": "input_layernorm.",
    "ffn_norm.": "post_attention_layernorm.",
}


def split_wqkv(w: torch.Tensor, cfg: ModelConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split a fused `wqkv` weight (or bias) into LLaMA's q, k and v projections."""
    g, d = cfg.kv_groups, cfg.head_dim
    grouped = w.reshape(cfg.num_key_value_heads, g + 2, d, *w.shape[1:])
    q, k, v = torch.split(grouped, [g, 1, 1], dim=1)
    return (q.reshape(-1, *w.shape[1:]), k.reshape(-1, *w.shape[1:]), v.reshape(-1, *w.shape[1:]))


def to_llama_state(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    out = {}
    for name, t in state.items():
        if name == "model.tok_embeddings.weight":
            out["model.embed_tokens.weight"] = t
        elif name == "output.weight":
            out["lm_head.weight"] = t
        elif name == "model.norm.weight":
            out[name] = t
        elif ".attention.wqkv." in name:
            prefix, suffix = name.split("attention.wqkv.")
            q, k, v = split_wqkv(t, cfg)
            out[f"{prefix}self_attn.q_proj.{suffix}"] = q
            out[f"{prefix}self_attn.k_proj.{suffix}"] = k
            out[f"{prefix}self_attn.v_proj.{suffix}"] = v
        else:
            for old, new in _LAYER_RENAMES.items():
                if f".{old}" in name:
                    out[name.replace(f".{old}", f".{new}")] = t
                    break
            else:
                raise KeyError(f"no LLaMA name for {name}")
    return out


def llama_config_dict(cfg: ModelConfig, dtype: torch.dtype) -> dict:
    scaling = None
    if cfg.rope_scaling:
        scaling = {"type": "dynamic", "rope_type": "dynamic", "factor": cfg.rope_scaling.factor}
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_act": "silu",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads,
        "head_dim": cfg.head_dim,
        "max_position_embeddings": cfg.max_position_embeddings,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_scaling": scaling,
        "attention_bias": cfg.bias,
        "mlp_bias": False,
        "initializer_range": cfg.initializer_range,
        "tie_word_embeddings": False,
        "use_cache": True,
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": cfg.eos_token_id,
        "pad_token_id": cfg.pad_token_id,
        "torch_dtype": str(dtype).removeprefix("torch."),
    }


def export_llama(src: InternLM2ForCausalLM | str | os.PathLike, folder: str | os.PathLike) -> Path:
    """Write a LLaMA-layout folder from a model or from an InternLM2 folder."""
    if isinstance(src, InternLM2ForCausalLM):
        cfg = src.cfg
        state = {k: v.detach().cpu() for k, v in src.state_dict().items()}
    else:
        cfg = config_from_dict(json.loads((Path(src) / "config.json").read_text()))
        state = read_weights(src)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dtype = next(iter(state.values())).dtype
    _write_weights(to_llama_state(state, cfg), folder)
    (folder / "config.json").write_text(json.dumps(llama_config_dict(cfg, dtype), indent=2) + "\n")
    return folder
