"""SentencePiece tokenizers: load any `.model` (ours or an official InternLM2 one), encode
Arrow batches of text into Arrow token lists, and train new BPE models the InternLM2 way.

Encoding goes through SentencePiece's own thread pool and its NumPy output, so the only
Python work per batch is one concatenation: the ids never become Python ints. SentencePiece
holds some 40 bytes per byte of a text it encodes, so a long text is encoded in pieces cut
where no token can cross (before a space that follows a non-space, for models that split on
whitespace without normalizing it); the ids are those of the whole text.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import sentencepiece as spm
from pydantic import Field

from refinery.pipeline.core import Strict
from refinery.pipeline.storage import replacing

TOKEN_LIST = pa.list_(pa.int32())
# Texts longer than this many characters are encoded in pieces of about this size.
PIECE_CHARS = 1 << 18


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def load_tokenizer(path: str | os.PathLike) -> spm.SentencePieceProcessor:
    """The SentencePiece model at `path`; a ValueError naming the file when it is not one."""
    try:
        return spm.SentencePieceProcessor(model_file=str(path))
    except (RuntimeError, OSError) as err:
        raise ValueError(f"{path} is not a SentencePiece model ({err})") from None


class Tokenizer:
    """A loaded SentencePiece model with the special ids the shards and the loader need."""

    def __init__(self, path: str | os.PathLike, *, threads: int = 0):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no tokenizer model at {self.path}")
        self.sp = load_tokenizer(self.path)
        self.splits_at_spaces = _splits_at_spaces(self.sp)
        self.threads = threads or available_cpus()
        self.sha256 = file_sha256(self.path)

    @property
    def vocab_size(self) -> int:
        return self.sp.vocab_size()

    @property
    def bos_id(self) -> int:
        return self.sp.bos_id()

    @property
    def eos_id(self) -> int:
        return self.sp.eos_id()

    @property
    def pad_id(self) -> int:
        return self.sp.pad_id()

    @property
    def unk_id(self) -> int:
        return self.sp.unk_id()

    def info(self, *, add_bos: bool, add_eos: bool) -> dict:
        """The `tokenizer` section of a shard manifest."""
        return {
            "kind": "sentencepiece",
            "model": self.path.name,
            "sha256": self.sha256,
            "vocab_size": self.vocab_size,
            "bos_id": self.bos_id,
            "eos_id": self.eos_id,
            "pad_id": self.pad_id,
            "unk_id": self.unk_id,
            "add_bos": add_bos,
            "add_eos": add_eos,
        }

    def encode(self, texts: list[str], *, add_bos: bool = False, add_eos: bool = False) -> list[np.ndarray]:
        """Token ids of each text, encoded in parallel by SentencePiece's threads."""
        if add_bos and self.bos_id < 0 or add_eos and self.eos_id < 0:
            raise ValueError(f"tokenizer {self.path.name} has no BOS/EOS piece")
        if not self.splits_at_spaces or all(len(t) <= PIECE_CHARS for t in texts):
            return self.sp.encode(texts, add_bos=add_bos, add_eos=add_eos, num_threads=self.threads, out_type="numpy")
        pieces = [list(_pieces(t, PIECE_CHARS)) for t in texts]
        flat = self.sp.encode([p for ps in pieces for p in ps], num_threads=self.threads, out_type="numpy")
        bos = [np.array([self.bos_id], dtype=np.int32)] if add_bos else []
        eos = [np.array([self.eos_id], dtype=np.int32)] if add_eos else []
        out, at = [], 0
        for ps in pieces:
            out.append(np.concatenate(bos + flat[at : at + len(ps)] + eos).astype(np.int32, copy=False))
            at += len(ps)
        return out

    def encode_arrow(
        self, texts: pa.Array | pa.ChunkedArray, *, add_bos: bool = False, add_eos: bool = False
    ) -> pa.ListArray:
        """Encode an Arrow string column into a `list<int32>` column (null text → null list)."""
        if isinstance(texts, pa.ChunkedArray):
            texts = texts.combine_chunks()
        valid = texts.is_valid().to_numpy(zero_copy_only=False)
        strings = texts.to_pylist()
        if not valid.all():
            strings = [s if ok else "" for s, ok in zip(strings, valid)]
        ids = self.encode(strings, add_bos=add_bos, add_eos=add_eos)
        return token_lists(ids, None if valid.all() else ~valid)

    def decode(self, ids: Iterable[int]) -> str:
        return self.sp.decode([int(i) for i in ids])


def _splits_at_spaces(sp: spm.SentencePieceProcessor) -> bool:
    """Whether the model's tokens never cross a space that follows a non-space: it splits on
    whitespace, marks it as a prefix, and neither normalizes text nor adds a dummy prefix."""
    try:
        from sentencepiece import sentencepiece_model_pb2
    except ImportError:  # needs protobuf; without it every text is encoded whole
        return False
    model = sentencepiece_model_pb2.ModelProto()
    model.ParseFromString(sp.serialized_model_proto())
    norm, trainer = model.normalizer_spec, model.trainer_spec
    return (
        norm.name == "identity"
        and not norm.add_dummy_prefix
        and not norm.remove_extra_whitespaces
        and trainer.split_by_whitespace
        and not trainer.treat_whitespace_as_suffix
    )


def _pieces(text: str, size: int) -> Iterator[str]:
    """`text` in pieces of about `size` characters, each cut before a space that follows a
    non-space character (a run of spaces is never cut)."""
    start = 0
    while len(text) - start > size:
        cut = text.find(" ", start + size)
        while cut > 0 and text[cut - 1] == " ":
            cut = text.find(" ", cut + 1)
        if cut < 0:
            break
        yield text[start:cut]
        start = cut
    yield text[start:]


def token_lists(ids: list[np.ndarray], null_mask: np.ndarray | None = None) -> pa.ListArray:
    """Build a `list<int32>` Arrow array from per-document id arrays without Python ints."""
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    offsets = np.zeros(len(ids) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values = np.concatenate(ids).astype(np.int32, copy=False) if ids else np.zeros(0, np.int32)
    mask = None if null_mask is None else pa.array(null_mask)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values), type=TOKEN_LIST, mask=mask)


class TrainConfig(Strict):
    """How to train a tokenizer. Defaults follow InternLM2: BPE, byte fallback for any
    character outside the vocabulary, digits split one by one, no normalization, and
    whitespace kept as written (so decoding gives back the exact text, code included)."""

    inputs: list[str] = Field(min_length=1)
    output: str
    vocab_size: int = Field(default=8000, gt=300)
    model_type: str = "bpe"
    character_coverage: float = Field(default=0.9995, gt=0, le=1)
    byte_fallback: bool = True
    split_digits: bool = True
    max_sentence_length: int = 16384
    input_sentence_size: int = 0
    text_key: str = "text"
    threads: int = 0


def iter_texts(path: str, text_key: str = "text") -> Iterator[str]:
    """Texts of one training input: .txt, .jsonl, .parquet, or a .zip of .txt files."""
    if path.endswith(".zip"):
        with zipfile.ZipFile(path) as zf:
            for name in sorted(zf.namelist()):
                if name.endswith(".txt"):
                    yield zf.read(name).decode("utf-8", errors="replace")
    elif path.endswith(".parquet"):
        for batch in pq.ParquetFile(path).iter_batches(columns=[text_key]):
            yield from (t for t in batch.column(0).to_pylist() if t)
    elif path.endswith(".jsonl"):
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    text = json.loads(line).get(text_key)
                    if text:
                        yield text
    else:
        with open(path, encoding="utf-8", errors="replace") as fh:
            yield fh.read()


def training_lines(inputs: list[str], text_key: str = "text") -> Iterator[str]:
    """SentencePiece trains on lines; paragraphs of the inputs, in input order."""
    for path in inputs:
        for text in iter_texts(path, text_key):
            for line in text.splitlines():
                if line.strip():
                    yield line


def train_tokenizer(config: TrainConfig) -> Path:
    """Train a SentencePiece model from `config.inputs`; writes `config.output` (a `.model`)."""
    missing = [p for p in config.inputs if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"training inputs not found: {', '.join(missing)}")
    output = Path(config.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=training_lines(config.inputs, config.text_key),
        model_writer=model,
        model_type=config.model_type,
        vocab_size=config.vocab_size,
        character_coverage=config.character_coverage,
        byte_fallback=config.byte_fallback,
        split_digits=config.split_digits,
        max_sentence_length=config.max_sentence_length,
        input_sentence_size=config.input_sentence_size,
        shuffle_input_sentence=config.input_sentence_size > 0,
        num_threads=config.threads or available_cpus(),
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=False,
        allow_whitespace_only_pieces=True,
        split_by_whitespace=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )
    with replacing(output) as tmp:
        tmp.write_bytes(model.getvalue())
    return output
