"""The reference for document-masked attention: one SDPA call over the whole window with a dense
(B, 1, T, T) boolean mask, causal and within documents (what the trainer computed before)."""

from __future__ import annotations

import torch


def dense_document_attention(q, k, v, spans, enable_gqa):
    t = q.shape[2]
    doc = torch.zeros(len(spans), t, dtype=torch.long)
    for b, row in enumerate(spans):
        for i, (lo, hi) in enumerate(row):
            doc[b, lo:hi] = i
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    mask = ((doc[:, :, None] == doc[:, None, :]) & causal)[:, None]
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=enable_gqa)
