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

import functools
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow as pa

from refinery.classifiers.ngram import tokens
from refinery.pipeline.storage import replacing

LABEL_PREFIX = "__label__"
# DenseMatrix::uniform initialises (rows*dim)/10 values per thread, for 10 blocks.
MIN_TRAIN_THREADS = 10


# A line break is a token of its own: it is what tells page chrome (short lines) from prose, in
# any language. fastText's end-of-line word is reused, as it already ends every training line.
NEWLINE_TOKEN = "</s>"
# A web address is one word, URL_WORD. Read piece by piece, "www", "co" and "uk" are words of
# text-message spam, and every link of a README or a news page would read as them. The same
# pattern for Python's `re` and Arrow's RE2 (whitespace spelled out: their `\s` differ).
URL = r"(?i:https?://|www\.)[^ \t\n\r\v\f]+"
URL_WORD = "url"
_URL = re.compile(URL)


def prepare(text: str, max_chars: int | None = None) -> str:
    """One line of lowercased tokens (words, single punctuation marks, URL_WORD per web address
    and a NEWLINE_TOKEN per line break), as seen in training."""
    if max_chars is not None:
        text = text[:max_chars]
    text = _URL.sub(f" {URL_WORD} ", text)
    words: list[str] = []
    for i, line in enumerate(text.split("\n")):
        if i:
            words.append(NEWLINE_TOKEN)
        words += tokens(line)
    return " ".join(words)


def _re2_class(codepoints: Iterable[int]) -> str:
    """The body of an RE2 character class matching exactly these code points (as ranges)."""
    runs: list[list[int]] = []
    for cp in sorted(codepoints):
        if runs and cp == runs[-1][1] + 1:
            runs[-1][1] = cp
        else:
            runs.append([cp, cp])
    return "".join(f"\\x{{{lo:x}}}-\\x{{{hi:x}}}" if hi > lo else f"\\x{{{lo:x}}}" for lo, hi in runs)


# Whitespace for both Python's `\\s` and fastText's reader ("\\n" is made NEWLINE_TOKEN first: the
# binding takes one line per text).
_SHARED_SPACES = frozenset(map(ord, " \t\n\r\v\f"))


@functools.cache
def arrow_patterns() -> tuple[str, str]:
    """RE2 patterns with which Arrow's kernels reproduce `prepare` exactly, derived once per
    process by comparing every code point under this Python and this pyarrow (their Unicode
    tables differ by version): (punctuation, odd). `punctuation` matches a character that is
    neither `\\w` nor `\\s` for Python's `re`; `odd` one that Arrow lowercases or classes
    differently from Python, the capital sigma (Python lowercases it by context), or a Python
    whitespace that fastText reads as a letter (no-break and other Unicode spaces): documents
    holding one are prepared in Python."""
    import pyarrow.compute as pc

    codepoints = np.concatenate([np.arange(0xD800), np.arange(0xE000, 0x110000)]).astype(np.uint32)
    everything = codepoints.tobytes().decode("utf-32-le")

    def matches(pattern: str) -> np.ndarray:
        # One C-level pass: matched characters become U+0000 (itself neither \w nor \s).
        marked = re.sub(pattern, "\0", everything).encode("utf-32-le")
        return (np.frombuffer(marked, np.uint32) == 0) & (codepoints != 0)

    py_word, py_space = matches(r"\w"), matches(r"\s")
    utf8 = everything.encode("utf-8")
    sizes = 1 + (codepoints >= 0x80) + (codepoints >= 0x800) + (codepoints >= 0x10000)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32)
    column = pa.StringArray.from_buffers(len(codepoints), pa.py_buffer(offsets), pa.py_buffer(utf8))
    arrow_word = pc.match_substring_regex(column, r"^[\p{L}\p{N}_]$").to_numpy(zero_copy_only=False)
    # Each character lowered alone (a U+0000 after each breaks the capital sigma's context and
    # ends it in the buffer); U+0000 itself, the separator, lowers to itself everywhere.
    lowered = ("\0".join(everything[1:]).lower() + "\0").encode("utf-8")
    ends = np.flatnonzero(np.frombuffer(lowered, np.uint8) == 0) + 1
    py_lower = pa.StringArray.from_buffers(
        len(ends), pa.py_buffer(np.concatenate([[0], ends]).astype(np.int32)), pa.py_buffer(lowered)
    )
    arrow_lower = pc.binary_join_element_wise(pc.utf8_lower(column[1:]), "", "\0")
    same_lower = np.concatenate([[True], pc.equal(arrow_lower, py_lower).to_numpy(zero_copy_only=False)])
    shared_space = np.isin(codepoints, list(_SHARED_SPACES))
    odd = (py_word != arrow_word) | ~same_lower | (codepoints == 0x3A3) | (py_space & ~shared_space)
    punctuation = f"[^\\p{{L}}\\p{{N}}_{_re2_class(codepoints[py_space])}]"
    return punctuation, f"[{_re2_class(codepoints[odd])}]"


def prepare_column(texts: pa.Array | pa.ChunkedArray, max_chars: int | None = None) -> list[str]:
    """`prepare` for a whole string column, in Arrow's C++ kernels (code-point slice, web addresses
    made URL_WORD, utf8proc lowercasing, an RE2 rewrite spacing out punctuation, newlines made
    NEWLINE_TOKEN) instead of a Python regex per document. The lines differ from `prepare`'s only
    in runs of whitespace, which fastText skips: the tokens it reads, and so its predictions, are
    the same. Nulls give empty lines."""
    import pyarrow.compute as pc

    punctuation, odd = arrow_patterns()
    if texts.null_count:
        texts = pc.fill_null(texts, "")
    # A text of at most max_chars bytes has at most max_chars characters: nothing to cut.
    if max_chars is not None and len(texts) and pc.max(pc.binary_length(texts)).as_py() > max_chars:
        texts = pc.utf8_slice_codeunits(texts, 0, max_chars)
    addressed = pc.replace_substring_regex(texts, URL, f" {URL_WORD} ")
    spaced = pc.replace_substring_regex(pc.utf8_lower(addressed), punctuation, r" \0 ")
    lines = pc.replace_substring(spaced, "\n", f" {NEWLINE_TOKEN} ").to_pylist()
    for i in np.flatnonzero(pc.match_substring_regex(texts, odd).to_numpy(zero_copy_only=False)):
        lines[i] = prepare(texts[int(i)].as_py())
    return lines


@dataclass
class TrainParams:
    dim: int = 20
    epoch: int = 20
    lr: float = 0.2
    word_ngrams: int = 2
    min_count: int = 2
    # Character n-grams of minn..maxn characters per word (0: words only, fastText's default).
    minn: int = 0
    maxn: int = 0
    bucket: int = 100_000
    seed: int = 0
    quantize: bool = True
    # Keep the most important rows of the quantized input matrix (0 = all).
    cutoff: int = 20_000
    max_chars: int = 20_000

    def __post_init__(self):
        if self.dim % 10:
            raise ValueError("dim must be a multiple of 10 (see the module docstring)")


def write_training_file(
    examples: Iterable[tuple[str, str]], path: str | os.PathLike, max_chars: int | None = None
) -> int:
    """Write `(text, label)` pairs in fastText's `__label__x tokens` format; returns the count."""
    n = 0
    with open(path, "w", encoding="utf-8") as out:
        for text, label in examples:
            line = prepare(text, max_chars)
            if line:
                out.write(f"{LABEL_PREFIX}{label} {line}\n")
                n += 1
    return n


def train(
    examples: list[tuple[str, str]], output: str | os.PathLike, params: TrainParams | None = None
) -> "FastTextClassifier":
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
            minn=params.minn,
            maxn=params.maxn,
            bucket=params.bucket,
            seed=params.seed,
            thread=max(MIN_TRAIN_THREADS, os.cpu_count() or 1),
            loss="softmax",
            verbose=0,
        )
        if params.quantize:
            model.quantize(input=train_file, qnorm=True, retrain=False, cutoff=params.cutoff)
    with replacing(output) as tmp:
        model.save_model(str(tmp))
    return FastTextClassifier(output)


def load_fasttext(path: str | os.PathLike):
    """The fastText model at `path`; a ValueError naming the file when it is not one."""
    import fasttext

    try:
        return fasttext.load_model(str(path))
    except (ValueError, RuntimeError, MemoryError) as err:
        raise ValueError(f"{path} is not a fastText model ({err})") from None


class FastTextClassifier:
    """A loaded model; `predict_proba` scores a batch of texts for every label at once."""

    def __init__(self, path: str | os.PathLike, max_chars: int | None = 20_000):
        self.path = Path(path)
        self.max_chars = max_chars
        self.model = load_fasttext(self.path)
        self.labels = [label[len(LABEL_PREFIX) :] for label in self.model.get_labels()]
        self._index = {LABEL_PREFIX + label: i for i, label in enumerate(self.labels)}

    def predict_proba(self, texts: list[str] | pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Probabilities, shape (len(texts), len(self.labels)), columns in `self.labels` order.
        An Arrow string column is prepared in Arrow (`prepare_column`), a list in Python."""
        if isinstance(texts, (pa.Array, pa.ChunkedArray)):
            return self.predict_lines(prepare_column(texts, self.max_chars))
        return self.predict_lines([prepare(t, self.max_chars) for t in texts])

    def predict_lines(self, lines: list[str]) -> np.ndarray:
        """`predict_proba` for lines already prepared (`prepare`, `prepare_column`)."""
        n_labels = len(self.labels)
        if not lines:
            return np.zeros((0, n_labels), dtype=np.float32)
        # One call for the batch; with k=-1 and threshold 0 every row holds every label, by rank.
        labels, probs = self.model.predict(lines, k=-1, threshold=0.0)
        columns = np.array([[self._index[label] for label in row] for row in labels], dtype=np.intp)
        out = np.empty((len(lines), n_labels), dtype=np.float32)
        np.put_along_axis(out, columns, np.asarray(probs, dtype=np.float32), axis=1)
        return np.clip(out, 0.0, 1.0, out=out)

    def predict(self, texts: list[str]) -> list[str]:
        probs = self.predict_proba(texts)
        return [self.labels[i] for i in probs.argmax(axis=1)] if len(texts) else []


def write_card(model_path: str | os.PathLike, card: dict) -> Path:
    """The model card beside the model: sources, licenses, parameters and held-out metrics, in the
    card's own order (what matters most first)."""
    path = Path(str(model_path) + ".json")
    path.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
