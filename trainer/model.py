"""InternLM2 in plain PyTorch, with the official parameter names so public checkpoints load as-is.

`attention.wqkv` is one fused projection laid out per key/value group: the group's query heads,
then its key head, then its value head. RMSNorm, rotate-half RoPE with `rope_theta` and dynamic
NTK scaling past `max_position_embeddings`, SwiGLU feed-forward `w2(silu(w1 x) * w3 x)`, causal
SDPA attention. Packed documents (the loader's `position_ids`, restarting at 0 at each document)
get positions from 0 and attention that never crosses a document boundary, computed per document
with causal SDPA (no dense mask).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from refinery.loaders.dataset import IGNORE_INDEX
from refinery.trainer.config import ModelConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # normalised in float32 (one fused kernel), scaled in the input's precision, as published
        return self.weight * F.rms_norm(x.float(), x.shape[-1:], eps=self.eps).to(x.dtype)


def rope_base(cfg: ModelConfig, seq_len: int) -> float:
    """The RoPE base for a forward pass over `seq_len` positions (dynamic NTK past the trained length)."""
    base = cfg.rope_theta
    limit = cfg.max_position_embeddings
    if cfg.rope_scaling is not None and seq_len > limit:
        factor = cfg.rope_scaling.factor
        dim = cfg.head_dim
        base = base * ((factor * seq_len / limit) - (factor - 1)) ** (dim / (dim - 2))
    return base


def rope_cos_sin(cfg: ModelConfig, positions: torch.Tensor, seq_len: int, dtype: torch.dtype):
    """cos/sin of shape (B, T, head_dim) for integer positions (B, T), computed in float32."""
    dim = cfg.head_dim
    base = rope_base(cfg, seq_len)
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64, device=positions.device).float() / dim))
    freqs = positions.float()[..., None] * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # x: (B, H, T, D); cos/sin: (B, T, D)
    cos, sin = cos[:, None], sin[:, None]
    return x * cos + rotate_half(x) * sin


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.head_dim
        self.wqkv = nn.Linear(
            cfg.hidden_size, (cfg.num_attention_heads + 2 * cfg.num_key_value_heads) * d, bias=cfg.bias
        )
        self.wo = nn.Linear(cfg.num_attention_heads * d, cfg.hidden_size, bias=cfg.bias)

    def forward(self, x, cos, sin, spans):
        b, t, _ = x.shape
        cfg = self.cfg
        g, d = cfg.kv_groups, cfg.head_dim
        qkv = self.wqkv(x).view(b, t, cfg.num_key_value_heads, g + 2, d)
        q = qkv[..., :g, :].reshape(b, t, cfg.num_attention_heads, d).transpose(1, 2)
        k = qkv[..., g, :].transpose(1, 2)
        v = qkv[..., g + 1, :].transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if spans is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=g > 1)
        else:
            out = document_attention(q, k, v, spans, enable_gqa=g > 1)
        return self.wo(out.transpose(1, 2).reshape(b, t, cfg.num_attention_heads * d))


class FeedForward(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.w1 = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.w3 = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.w2 = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attention = Attention(cfg)
        self.feed_forward = FeedForward(cfg)
        self.attention_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.ffn_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x, cos, sin, spans):
        x = x + self.attention(self.attention_norm(x), cos, sin, spans)
        return x + self.feed_forward(self.ffn_norm(x))


class InternLM2Model(nn.Module):
    """The decoder stack; parameter names match `model.*` in the published checkpoints."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, input_ids, position_ids=None):
        b, t = input_ids.shape
        x = self.tok_embeddings(input_ids)
        if position_ids is None:
            spans = None
            cos, sin = self._rope_cache(t, x.device, x.dtype)
        else:
            spans = document_spans(position_ids)
            cos, sin = rope_cos_sin(self.cfg, position_ids, int(position_ids.max()) + 1, x.dtype)
        for layer in self.layers:
            x = layer(x, cos, sin, spans)
        return self.norm(x)

    def _rope_cache(self, t: int, device, dtype):
        """cos/sin (1, t, head_dim) for positions 0..t-1, kept for the next pass of the same length."""
        key = (t, device, dtype)
        if getattr(self, "_rope_key", None) != key:
            positions = torch.arange(t, device=device)[None]
            self._rope_key, self._rope = key, rope_cos_sin(self.cfg, positions, t, dtype)
        return self._rope


def document_spans(position_ids: torch.Tensor) -> list[list[tuple[int, int]]]:
    """Per row, the (start, end) of each packed document: a new one starts at position 0. Read
    once per forward pass (one device-to-host copy), shared by every layer."""
    starts = (position_ids == 0).cpu()
    t = position_ids.shape[1]
    out = []
    for row in starts:
        bounds = [0, *[i for i in row.nonzero().flatten().tolist() if i > 0], t]
        out.append(list(zip(bounds, bounds[1:])))
    return out


def document_attention(q, k, v, spans: list[list[tuple[int, int]]], enable_gqa: bool) -> torch.Tensor:
    """Causal attention inside each packed document, never across: one causal SDPA call per
    document, so the memory-efficient (flash) kernels apply on CPU and GPU and memory grows with
    the window, not with its square, as a dense (T, T) document mask would."""
    rows = []
    for b, row in enumerate(spans):
        if len(row) == 1:
            rows.append(
                F.scaled_dot_product_attention(
                    q[b : b + 1], k[b : b + 1], v[b : b + 1], is_causal=True, enable_gqa=enable_gqa
                )
            )
            continue
        rows.append(
            torch.cat(
                [
                    F.scaled_dot_product_attention(
                        q[b : b + 1, :, lo:hi],
                        k[b : b + 1, :, lo:hi],
                        v[b : b + 1, :, lo:hi],
                        is_causal=True,
                        enable_gqa=enable_gqa,
                    )
                    for lo, hi in row
                ],
                dim=2,
            )
        )
    return torch.cat(rows, dim=0)


class InternLM2ForCausalLM(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.model = InternLM2Model(cfg)
        self.output = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.apply(self._init)

    def _init(self, module):
        std = self.cfg.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)

    def forward(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        loss_chunk_tokens: int = 0,
    ) -> torch.Tensor:
        """The logits, or with `labels` the mean loss (`chunked_lm_loss` when `loss_chunk_tokens`),
        so that a wrapper such as DDP sees one forward call either way."""
        hidden = self.model(input_ids, position_ids)
        if labels is None:
            return self.output(hidden)
        if loss_chunk_tokens:
            return chunked_lm_loss(hidden, self.output.weight, labels, loss_chunk_tokens)
        return causal_lm_loss(self.output(hidden), labels)


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Mean next-token cross-entropy in float32; `labels` are already shifted to align with `logits`."""
    return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=ignore_index)


def _chunk_loss_sum(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(F.linear(hidden, weight).float(), labels, ignore_index=IGNORE_INDEX, reduction="sum")


def chunked_lm_loss(
    hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, chunk_tokens: int
) -> torch.Tensor:
    """`causal_lm_loss(hidden @ weight.T, labels)` without the float32 logits of the whole batch:
    the output projection and the loss run `chunk_tokens` positions at a time, each chunk's
    logits recomputed in the backward pass (activation checkpointing), so at most one chunk of
    logits is alive."""
    flat, targets = hidden.flatten(0, 1), labels.flatten()
    total = hidden.new_zeros((), dtype=torch.float32)
    for lo in range(0, flat.shape[0], chunk_tokens):
        total = total + checkpoint(
            _chunk_loss_sum, flat[lo : lo + chunk_tokens], weight, targets[lo : lo + chunk_tokens], use_reentrant=False
        )
    return total / (targets != IGNORE_INDEX).sum().clamp(min=1)
