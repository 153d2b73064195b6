"""The evaluation suite: YAML validated before any work starts, like every other config.

    tokenizer: models/tokenizer/refinery-demo-8k.model   # the shards' tokenizer (checked by sha256)
    tasks:
      - {task: perplexity, name: heldout, data: RUN/shards, seq_len: 2048, max_tokens: 1000000}
      - {task: needle, name: needle, haystack: RUN/shards, lengths: [4096, 32768], depths: [0.1, 0.5, 0.9]}
      - {task: multiple_choice, name: mc, data: evals/mc.jsonl}

Paths are relative to the suite file's folder or the working directory; shard folders may be URIs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Literal, Union

import yaml
from pydantic import Field, ValidationError, model_validator

from refinery.loaders.source import ShardSource
from refinery.pipeline.core import ConfigError, Strict
from refinery.pipeline.resources import resolve_path
from refinery.pipeline.storage import is_local
from refinery.tokenize.tokenizer import file_sha256, load_tokenizer

NAME = r"^[A-Za-z0-9_.-]+$"


class PerplexityTask(Strict):
    task: Literal["perplexity"]
    name: str = Field(pattern=NAME)
    # One shard folder, or several (loss per source besides the total); `name=path` names a source.
    data: list[str] = Field(min_length=1)
    seq_len: int = Field(default=2048, gt=0)
    max_tokens: int = Field(default=1_000_000, gt=0)
    windows_per_trial: int = Field(default=16, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _one_or_many(cls, raw):
        if isinstance(raw, dict) and isinstance(raw.get("data"), str):
            raw = {**raw, "data": [raw["data"]]}
        return raw


class NeedleTask(Strict):
    """InternLM2's needle in a haystack: a generated fact at each depth of real text of each length."""

    task: Literal["needle"]
    name: str = Field(pattern=NAME)
    haystack: str
    lengths: list[int] = Field(min_length=1)
    depths: list[float] = Field(min_length=1)
    # The answer is ranked by log-likelihood among this many numbers of the same length.
    candidates: int = Field(default=10, ge=2)
    # Needles per (length, depth) cell, each with its own fact and distractors.
    repeats: int = Field(default=1, gt=0)
    seed: int = 0

    @model_validator(mode="after")
    def _ranges(self):
        if any(not 0.0 <= d <= 1.0 for d in self.depths):
            raise ValueError("depths are fractions between 0 and 1")
        if any(n < 64 for n in self.lengths):
            raise ValueError("lengths are token counts of at least 64")
        return self


class MultipleChoiceTask(Strict):
    """Rows `{question, choices: [...], answer: index}`, each choice scored by its log-likelihood
    given the question, raw and per byte of the choice (the harnesses' acc and acc_norm)."""

    task: Literal["multiple_choice"]
    name: str = Field(pattern=NAME)
    data: str
    questions_per_trial: int = Field(default=32, gt=0)


Task = Annotated[Union[PerplexityTask, NeedleTask, MultipleChoiceTask], Field(discriminator="task")]


class Suite(Strict):
    tokenizer: str = "models/tokenizer/refinery-demo-8k.model"
    tasks: list[Task] = Field(min_length=1)
    # Windows or sequences per forward pass.
    batch_size: int = Field(default=8, gt=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # A failed trial is run again this many times before it is reported as failed.
    retries: int = Field(default=2, ge=0)

    @model_validator(mode="after")
    def _unique(self):
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"task names must differ: {names}")
        return self


def sources(task: PerplexityTask) -> list[tuple[str, str]]:
    """(source name, path) of each shard folder: `name=path`, or the folder's own name."""
    out = []
    for entry in task.data:
        name, sep, path = entry.partition("=")
        if not sep or "/" in name or ":" in name:
            name, path = Path(entry.rstrip("/")).name or entry, entry
        out.append((name, path))
    return out


def read_questions(path: str) -> list[dict]:
    """The rows of a multiple-choice file; ValueError naming the line of a bad one."""
    rows = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number}: not JSON ({err.msg})") from None
        choices, answer = row.get("choices"), row.get("answer")
        if not (
            isinstance(row.get("question"), str)
            and isinstance(choices, list)
            and len(choices) >= 2
            and all(isinstance(c, str) for c in choices)
            and isinstance(answer, int)
            and 0 <= answer < len(choices)
        ):
            raise ValueError(
                f"{path}:{number}: expected question (string), choices (two or more strings), "
                "answer (an index into choices)"
            )
        rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no questions")
    return rows


def _local(path: str, base: Path) -> str:
    """A local path as found (relative to the suite's folder or the working directory); URIs as given."""
    if not is_local(path):
        return path
    return str(resolve_path(path.removeprefix("file://"), base))


def load_suite(path: str | os.PathLike) -> Suite:
    """Read and check a suite: every file exists and reads, every shard folder opens, and the
    tokenizer is the one the shards were written with."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(str(path), "(file)", f"cannot read: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise ConfigError(str(path), "(syntax)", str(err).replace("\n", " ")) from None
    try:
        suite = Suite.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ConfigError(
            str(path), key, "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        ) from None
    base = path.parent
    suite.tokenizer = str(resolve_path(suite.tokenizer, base))
    try:
        load_tokenizer(suite.tokenizer)
    except (OSError, ValueError) as err:
        raise ConfigError(str(path), "tokenizer", str(err)) from None
    sha = file_sha256(suite.tokenizer)
    for i, task in enumerate(suite.tasks):
        key = f"tasks[{i}]"
        try:
            if isinstance(task, PerplexityTask):
                task.data = [f"{name}={_local(p, base)}" for name, p in sources(task)]
                folders = [p for _, p in sources(task)]
            elif isinstance(task, NeedleTask):
                task.haystack = _local(task.haystack, base)
                folders = [task.haystack]
            else:
                task.data = _local(task.data, base)
                read_questions(task.data)
                folders = []
            for folder in folders:
                found = ShardSource(folder).manifest["tokenizer"].get("sha256")
                if found != sha:
                    raise ValueError(f"{folder} was tokenized with another model than {suite.tokenizer}")
        except (OSError, ValueError) as err:
            raise ConfigError(str(path), key, str(err)) from None
    return suite
