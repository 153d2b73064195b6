"""The three tasks, each cut into small trials whose partial sums merge exactly.

A trial is (task name, part): a range of windows of one source (perplexity), one cell of the
needle grid, or a block of questions. `run_trial` scores one trial of one checkpoint in a worker
and returns its partial sums; `merge` turns every partial of a (checkpoint, task) into metrics.
Workers keep the last checkpoint's model, the tokenizer and the shard readers between trials.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from refinery.loaders.dataset import TokenDataset
from refinery.tokenize.tokenizer import Tokenizer
from refinery.trainer import checkpoint
from refinery.trainer.evaluation.suite import (
    MultipleChoiceTask,
    NeedleTask,
    PerplexityTask,
    Suite,
    read_questions,
    sources,
)
from refinery.trainer.model import InternLM2ForCausalLM

_NAMES = (
    "amber",
    "cedar",
    "harbor",
    "willow",
    "granite",
    "meadow",
    "falcon",
    "copper",
    "juniper",
    "lantern",
    "orchid",
    "summit",
    "thistle",
    "violet",
    "walnut",
    "zephyr",
)


@dataclass(frozen=True)
class Part:
    """One trial of a task: its file name in the records, the work it names and its cost in tokens."""

    task: str
    key: str
    spec: tuple
    cost: int


def plan(suite: Suite) -> list[Part]:
    """Every trial of one checkpoint, in the suite's order."""
    parts = []
    for task in suite.tasks:
        if isinstance(task, PerplexityTask):
            for source, path in sources(task):
                windows = min(_dataset(path, task.seq_len).windows_per_epoch(0), task.max_tokens // task.seq_len)
                if windows < 1:
                    raise ValueError(f"{task.name}: {path} holds fewer than {task.seq_len + 1} tokens")
                for a in range(0, windows, task.windows_per_trial):
                    b = min(windows, a + task.windows_per_trial)
                    parts.append(
                        Part(task.name, f"{source}-w{a:07d}-{b:07d}", ("windows", source, a, b), (b - a) * task.seq_len)
                    )
        elif isinstance(task, NeedleTask):
            for length in task.lengths:
                if _dataset(task.haystack, length).windows_per_epoch(0) < task.repeats:
                    raise ValueError(f"{task.name}: {task.haystack} holds fewer than {task.repeats} x {length} tokens")
                for depth in task.depths:
                    for r in range(task.repeats):
                        parts.append(
                            Part(
                                task.name,
                                f"L{length}-d{depth:.3f}-r{r}",
                                ("needle", length, depth, r),
                                length * task.candidates,
                            )
                        )
        else:
            n = len(_rows(task.data))
            for a in range(0, n, task.questions_per_trial):
                b = min(n, a + task.questions_per_trial)
                parts.append(Part(task.name, f"q{a:07d}-{b:07d}", ("questions", a, b), (b - a) * 256))
    return parts


# --- per worker: what trials share ------------------------------------------------------------

_CACHE: dict = {}


def _dataset(path: str, seq_len: int) -> TokenDataset:
    key = ("data", path, seq_len)
    if key not in _CACHE:
        _CACHE[key] = TokenDataset(path, seq_len, shuffle=False)
    return _CACHE[key]


def _tokenizer(path: str) -> Tokenizer:
    key = ("tokenizer", path)
    if key not in _CACHE:
        _CACHE[key] = Tokenizer(path, threads=1)
    return _CACHE[key]


def _rows(path: str) -> list[dict]:
    key = ("questions", path)
    if key not in _CACHE:
        _CACHE[key] = read_questions(path)
    return _CACHE[key]


def device_of(suite: Suite) -> torch.device:
    if suite.device == "cuda" or (suite.device == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def load_model(checkpoints: str | Path, step: int, device: torch.device) -> InternLM2ForCausalLM:
    """The model of one checkpoint, read-only; the worker keeps the last one it loaded."""
    key = ("model", str(checkpoints), step)
    if key not in _CACHE:
        for old in [k for k in _CACHE if k[0] == "model"]:
            del _CACHE[old]
        _CACHE[key] = checkpoint.load_model(checkpoints, step).to(device).eval()
    return _CACHE[key]


# --- scoring ----------------------------------------------------------------------------------


@torch.no_grad()
def sequence_loglikelihoods(
    model, sequences: list[list[int]], continuation: list[int], batch_size: int, device: torch.device
) -> list[float]:
    """log P(last `continuation[i]` tokens of `sequences[i]` | the tokens before them), summed
    over those tokens, in float32; sequences are right-padded into batches."""
    out = []
    for lo in range(0, len(sequences), batch_size):
        group, tails = sequences[lo : lo + batch_size], continuation[lo : lo + batch_size]
        width = max(map(len, group))
        ids = torch.zeros(len(group), width, dtype=torch.long)
        for i, seq in enumerate(group):
            ids[i, : len(seq)] = torch.tensor(seq)
        logprobs = F.log_softmax(model(ids.to(device)).float(), dim=-1).cpu()
        for i, (seq, tail) in enumerate(zip(group, tails)):
            targets = torch.tensor(seq[len(seq) - tail :])
            rows = logprobs[i, len(seq) - tail - 1 : len(seq) - 1]
            out.append(float(rows.gather(1, targets[:, None]).sum()))
    return out


def choice_tokens(tokenizer: Tokenizer, question: str, choices: list[str]) -> tuple[list[list[int]], list[int]]:
    """Each choice as `question + " " + choice` in tokens (BOS first where the tokenizer has one)
    and its continuation length: the tokens after the question's own encoding, as the common
    harnesses split context and continuation."""
    bos = [tokenizer.bos_id] if tokenizer.bos_id >= 0 else []
    context = tokenizer.encode([question])[0].tolist()
    sequences, tails = [], []
    for choice in choices:
        whole = tokenizer.encode([f"{question} {choice}"])[0].tolist()
        tail = (
            len(whole) - len(context) if whole[: len(context)] == context else len(tokenizer.encode([f" {choice}"])[0])
        )
        sequences.append(bos + whole)
        tails.append(max(1, tail))
    return sequences, tails


def _perplexity(task: PerplexityTask, spec: tuple, model, suite: Suite, device) -> dict:
    _, source, a, b = spec
    data = _dataset(dict(sources(task))[source], task.seq_len)
    loss_sum, tokens = 0.0, 0
    with torch.no_grad():
        for lo in range(a, b, suite.batch_size):
            windows = [data.window(0, i) for i in range(lo, min(b, lo + suite.batch_size))]
            ids = torch.stack([w["input_ids"] for w in windows]).to(device)
            labels = torch.stack([w["labels"] for w in windows]).to(device)
            logits = model(ids).float()
            loss_sum += float(F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="sum"))
            tokens += labels.numel()
    return {"source": source, "loss_sum": loss_sum, "tokens": tokens}


def needle(task: NeedleTask, length: int, depth: float, repeat: int) -> tuple[str, str, list[int]]:
    """The needle of one cell: the fact, the question, and the candidate numbers (the answer first)."""
    rng = random.Random(f"{task.seed}/{length}/{depth}/{repeat}")
    name = f"the {rng.choice(_NAMES)} {rng.choice(_NAMES)}"
    numbers = rng.sample(range(100_000, 1_000_000), task.candidates)
    return (
        f" The secret number of {name} is {numbers[0]}.",
        f" What is the secret number of {name}? The secret number of {name} is",
        numbers,
    )


def _needle(task: NeedleTask, spec: tuple, model, suite: Suite, device) -> dict:
    _, length, depth, repeat = spec
    tokenizer = _tokenizer(suite.tokenizer)
    fact, question, numbers = needle(task, length, depth, repeat)
    fact_ids, question_ids = (tokenizer.encode([t])[0].tolist() for t in (fact, question))
    answers = [tokenizer.encode([f" {n}."])[0].tolist() for n in numbers]
    room = length - len(fact_ids) - len(question_ids) - max(map(len, answers))
    hay = _dataset(task.haystack, length).window(0, repeat)["input_ids"][: max(room, 0)].tolist()
    at = int(round(depth * len(hay)))
    prompt = hay[:at] + fact_ids + hay[at:] + question_ids
    scores = sequence_loglikelihoods(
        model, [prompt + a for a in answers], [len(a) for a in answers], suite.batch_size, device
    )
    rank = sum(s > scores[0] for s in scores[1:])
    return {"length": length, "depth": depth, "rank": rank, "retrieved": int(rank == 0)}


def _questions(task: MultipleChoiceTask, spec: tuple, model, suite: Suite, device) -> dict:
    _, a, b = spec
    tokenizer = _tokenizer(suite.tokenizer)
    correct = correct_norm = 0
    for row in _rows(task.data)[a:b]:
        sequences, tails = choice_tokens(tokenizer, row["question"], row["choices"])
        scores = sequence_loglikelihoods(model, sequences, tails, suite.batch_size, device)
        per_byte = [s / max(1, len(c.encode())) for s, c in zip(scores, row["choices"])]
        correct += int(max(range(len(scores)), key=scores.__getitem__) == row["answer"])
        correct_norm += int(max(range(len(per_byte)), key=per_byte.__getitem__) == row["answer"])
    return {"questions": b - a, "correct": correct, "correct_norm": correct_norm}


_SCORERS = {PerplexityTask: _perplexity, NeedleTask: _needle, MultipleChoiceTask: _questions}


def run_trial(suite: Suite, checkpoints: str, step: int, part: Part) -> dict:
    """Score one trial of one checkpoint (in a worker); its partial sums."""
    device = device_of(suite)
    task = next(t for t in suite.tasks if t.name == part.task)
    model = load_model(checkpoints, step, device)
    return _SCORERS[type(task)](task, part.spec, model, suite, device)


def merge(task, partials: list[dict]) -> dict[str, float]:
    """A task's metrics from all its trials' partial sums (exact: sums, then ratios)."""
    if isinstance(task, PerplexityTask):
        metrics = {}
        by_source: dict[str, list[float]] = {}
        for p in partials:
            total = by_source.setdefault(p["source"], [0.0, 0])
            total[0] += p["loss_sum"]
            total[1] += p["tokens"]
        loss = sum(t[0] for t in by_source.values()) / sum(t[1] for t in by_source.values())
        metrics.update(loss=loss, perplexity=math.exp(loss))
        if len(by_source) > 1:
            for source, (loss_sum, tokens) in sorted(by_source.items()):
                metrics[f"loss/{source}"] = loss_sum / tokens
        return metrics
    if isinstance(task, NeedleTask):
        metrics = {"accuracy": sum(p["retrieved"] for p in partials) / len(partials)}
        cells: dict[tuple, list[int]] = {}
        for p in partials:
            cells.setdefault((p["length"], p["depth"]), []).append(p["retrieved"])
        for (length, depth), found in sorted(cells.items()):
            metrics[f"retrieved/L{length}/d{depth:g}"] = sum(found) / len(found)
        return metrics
    n = sum(p["questions"] for p in partials)
    return {
        "accuracy": sum(p["correct"] for p in partials) / n,
        "accuracy_norm": sum(p["correct_norm"] for p in partials) / n,
    }
