"""Coherence scorer backed by a refinery InternLM2 checkpoint (a Hugging Face-style folder written
by `refinery.trainer.hf.save_hf`) and its sentencepiece tokenizer."""

from __future__ import annotations

import numpy as np


class InternLM2Scorer:
    def __init__(self, path: str, tokenizer: str, max_tokens: int = 2048, device: str = "cpu"):
        import sentencepiece as spm
        import torch

        from refinery.trainer.hf import load_hf

        self.torch = torch
        self.device = torch.device(device)
        self.model = load_hf(path).to(self.device).eval()
        self.sp = spm.SentencePieceProcessor(model_file=tokenizer)
        self.max_tokens = max_tokens

    def score_windows(self, windows: list[str], contexts: list[str | None]) -> np.ndarray:
        torch = self.torch
        out = np.full(len(windows), np.nan)
        half = self.max_tokens // 2
        with torch.no_grad():
            for i, (window, context) in enumerate(zip(windows, contexts)):
                target = self.sp.encode(window)[:half]
                prefix = ([self.sp.bos_id()] if self.sp.bos_id() >= 0 else []) + (
                    self.sp.encode(context)[-half:] if context else []
                )
                if not target or not prefix:
                    continue
                ids = torch.tensor([prefix + target], device=self.device)
                logits = self.model(ids)[0, len(prefix) - 1 : -1].float()
                nll = torch.nn.functional.cross_entropy(logits, ids[0, len(prefix) :], reduction="mean")
                out[i] = float(nll)
        return out
