"""fastText supervised classifiers: train, quantize, load and batched prediction.

Binding: `fasttext-numpy2-wheel` (its `predict` works under numpy 2 for one string and for a
list). Its C++ core comes from a fastText revision in which `DenseMatrix` storage is an
uninitialised aligned buffer and `DenseMatrix::uniform` fills the input matrix in 10 fixed
blocks, one per training thread: with fewer than 10 threads the rest of the embedding matrix
keeps whatever the heap held before (valgrind: "uninitialised value created by
intgemm::AlignedVector" read in `DenseMatrix::dotRow`). In a fresh process that memory is
usually zero, after earlier allocations it is garbage, and training ends in "Encountered NaN"
(or, silently, a worse model) whatever the learning rate. Training here therefore always runs
with at least 10 threads and a dimension that is a multiple of 10, so every row is initialised.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

LABEL_PREFIX = "__label__"
# DenseMatrix::uniform initialises (rows*dim)/10 values per thread, for 10 blocks.
MIN_TRAIN_THREADS = 10
_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def prepare(text: str, max_chars: int | None = None) -> str:
    """One line of lowercased tokens (words and single punctuation marks), as seen in training."""
    if max_chars is not None:
        text = text[:max_chars]
    return " ".join(_TOKEN.findall(text.lower()))


@dataclass
class TrainParams:
    dim: int = 20
    epoch: int = 20
    lr: float = 0.2
    word_ngrams: int = 2
    min_count: int = 2
    bucket: int = 100_000
    seed: int = 0
    quantize: bool = True
    # Keep the most important rows of the quantized input matrix (0 = all).
    cutoff: int = 20_000
    max_chars: int = 20_000

    def __post_init__(self):
        if self.dim % 10:
            raise ValueError("dim must be a multiple of 10 (see the module docstring)")


def write_training_file(examples: Iterable[tuple[str, str]], path: str | os.PathLike, max_chars: int | None = None) -> int:
    """Write `(text, label)` pairs in fastText's `__label__x tokens` format; returns the count."""
    n = 0
    with open(path, "w", encoding="utf-8") as out:
        for text, label in examples:
            line = prepare(text, max_chars)
            if line:
                out.write(f"{LABEL_PREFIX}{label} {line}\n")
                n += 1
    return n


def train(examples: list[tuple[str, str]], output: str | os.PathLike, params: TrainParams | None = None) -> "FastTextClassifier":
    """Train on `(text, label)` pairs and write the model (`.ftz` when quantized)."""
    import fasttext

    params = params or TrainParams()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        train_file = os.path.join(tmp, "train.txt")
        if write_training_file(examples, train_file, params.max_chars) == 0:
            raise ValueError("no training examples with text")
        model = fasttext.train_supervised(
            input=train_file,
            dim=params.dim,
            epoch=params.epoch,
            lr=params.lr,
            wordNgrams=params.word_ngrams,
            minCount=params.min_count,
            bucket=params.bucket,
            seed=params.seed,
            thread=max(MIN_TRAIN_THREADS, os.cpu_count() or 1),
            loss="softmax",
            verbose=0,
        )
        if params.quantize:
            model.quantize(input=train_file, qnorm=True, retrain=False, cutoff=params.cutoff)
    tmp_out = output.with_name(output.name + ".tmp")
    model.save_model(str(tmp_out))
    os.replace(tmp_out, output)
    return FastTextClassifier(output)


class FastTextClassifier:
    """A loaded model; `predict_proba` scores a batch of texts for every label at once."""

    def __init__(self, path: str | os.PathLike, max_chars: int | None = 20_000):
        import fasttext

        self.path = Path(path)
        self.max_chars = max_chars
        self.model = fasttext.load_model(str(self.path))
        self.labels = [label[len(LABEL_PREFIX):] for label in self.model.get_labels()]
        self._index = {LABEL_PREFIX + label: i for i, label in enumerate(self.labels)}

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Probabilities, shape (len(texts), len(self.labels)), columns in `self.labels` order."""
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        if not texts:
            return out
        lines = [prepare(t, self.max_chars) for t in texts]
        labels, probs = self.model.predict(lines, k=-1, threshold=0.0)
        for i, (row_labels, row_probs) in enumerate(zip(labels, probs)):
            for label, p in zip(row_labels, row_probs):
                out[i, self._index[label]] = p
        return np.clip(out, 0.0, 1.0)

    def predict(self, texts: list[str]) -> list[str]:
        probs = self.predict_proba(texts)
        return [self.labels[i] for i in probs.argmax(axis=1)] if len(texts) else []


def write_card(model_path: str | os.PathLike, card: dict) -> Path:
    """The model card beside the model: sources, licenses, parameters and held-out metrics."""
    path = Path(str(model_path) + ".json")
    path.write_text(json.dumps(card, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
    return path


def params_dict(params: TrainParams) -> dict:
    return asdict(params)
