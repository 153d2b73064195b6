"""`refinery eval`: checkpoints scored beside a running training, trials that merge exactly and
survive a killed evaluator, failures classified, and a multiple-choice scorer that agrees with
transformers' Llama on the exported checkpoint."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from test_trainer_loop import ENV, HELD_OUT, TOKENIZER, make_shards, tiny_config

from refinery.pipeline.cli import main as cli
from refinery.pipeline.config import ConfigError
from refinery.tokenize.tokenizer import Tokenizer
from refinery.trainer.config import load_train_config
from refinery.trainer.evaluation.evaluator import Evaluator
from refinery.trainer.evaluation.suite import load_suite
from refinery.trainer.evaluation.tasks import choice_tokens, load_model, merge, plan, run_trial, sequence_loglikelihoods
from refinery.trainer.hf import export_llama
from refinery.trainer.loop import FINISHED, train

REPO = Path(__file__).resolve().parents[1]
QUESTIONS = REPO / "data" / "benchmarks" / "demo-reading.jsonl"


def write_suite(folder: Path, **changes) -> Path:
    suite = {
        "tokenizer": str(TOKENIZER),
        "batch_size": 4,
        "tasks": [
            {
                "task": "perplexity",
                "name": "heldout",
                "data": "valid",
                "seq_len": 64,
                "max_tokens": 4096,
                "windows_per_trial": 16,
            },
            {"task": "needle", "name": "needle", "haystack": "valid", "lengths": [96, 160], "depths": [0.2, 0.8]},
            {"task": "multiple_choice", "name": "reading", "data": str(QUESTIONS), "questions_per_trial": 2},
        ],
    }
    suite.update(changes)
    path = folder / "suite.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished tiny run with checkpoints at steps 5, 10, 15, 20, and held-out shards beside it."""
    tmp = tmp_path_factory.mktemp("eval")
    make_shards(tmp / "shards")
    make_shards(tmp / "valid", HELD_OUT)
    conf = tiny_config(tmp, **{"checkpoint.every": 5, "checkpoint.keep": 10, "checkpoint.asynchronous": False})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(load_train_config(conf), str(tmp / "shards"), tmp / "run", max_steps=20)
    finally:
        torch.set_num_threads(threads)
    return tmp


def results(run: Path) -> dict[tuple[int, str, str], float]:
    lines = (
        (run / "eval" / "results.jsonl").read_text().splitlines() if (run / "eval" / "results.jsonl").exists() else []
    )
    return {(r["step"], r["task"], r["metric"]): r["value"] for r in map(json.loads, lines)}


def test_suite_errors(trained, tmp_path):
    shutil.copytree(trained / "valid", tmp_path / "valid")

    def check(match, **changes):
        with pytest.raises(ConfigError, match=match):
            load_suite(write_suite(tmp_path, **changes))

    check("tasks.0", tasks=[{"task": "bleu", "name": "x"}])
    check("task names must differ", tasks=[{"task": "multiple_choice", "name": "a", "data": str(QUESTIONS)}] * 2)
    check(r"tasks\[0\].*nope.jsonl", tasks=[{"task": "multiple_choice", "name": "a", "data": "nope.jsonl"}])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "choices": ["a", "b"], "answer": 2}\n')
    check("bad.jsonl:1: expected question", tasks=[{"task": "multiple_choice", "name": "a", "data": str(bad)}])
    manifest = tmp_path / "valid" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["tokenizer"]["sha256"] = "0" * 64
    manifest.write_text(json.dumps(data))
    check("tokenized with another model", tasks=[{"task": "perplexity", "name": "p", "data": "valid"}])


def test_trials_merge_to_the_whole(trained):
    """Perplexity cut into trials equals one pass over all windows; the needle cells cover the grid."""
    suite = load_suite(write_suite(trained))
    parts = plan(suite)
    ppl = [p for p in parts if p.task == "heldout"]
    assert len(ppl) == 4 and sum(p.spec[3] - p.spec[2] for p in ppl) == 64
    step, checkpoints = 20, str(trained / "run" / "checkpoints")
    merged = merge(suite.tasks[0], [run_trial(suite, checkpoints, step, p) for p in ppl])
    whole = run_trial(
        suite.model_copy(update={"batch_size": 64}),
        checkpoints,
        step,
        ppl[0].__class__("heldout", "all", ("windows", "valid", 0, 64), 0),
    )
    assert math.isclose(merged["loss"], whole["loss_sum"] / whole["tokens"], rel_tol=1e-6)
    assert math.isclose(merged["perplexity"], math.exp(merged["loss"]))
    cells = merge(suite.tasks[1], [run_trial(suite, checkpoints, step, p) for p in parts if p.task == "needle"])
    assert sorted(cells) == [
        "accuracy",
        "retrieved/L160/d0.2",
        "retrieved/L160/d0.8",
        "retrieved/L96/d0.2",
        "retrieved/L96/d0.8",
    ]


def test_choice_loglikelihoods_match_transformers_llama(trained, tmp_path):
    transformers = pytest.importorskip("transformers")
    model = load_model(trained / "run" / "checkpoints", 20, torch.device("cpu"))
    llama = transformers.LlamaForCausalLM.from_pretrained(
        export_llama(model, tmp_path / "llama"), torch_dtype=torch.float32
    ).eval()
    tokenizer = Tokenizer(TOKENIZER, threads=1)
    for row in map(json.loads, QUESTIONS.read_text().splitlines()):
        sequences, tails = choice_tokens(tokenizer, row["question"], row["choices"])
        ours = sequence_loglikelihoods(model, sequences, tails, 3, torch.device("cpu"))
        for seq, tail, mine in zip(sequences, tails, ours):
            with torch.no_grad():
                logits = llama(torch.tensor([seq])).logits[0].float()
            target = torch.tensor(seq[-tail:])
            theirs = torch.log_softmax(logits, -1)[len(seq) - tail - 1 : -1].gather(1, target[:, None]).sum()
            assert math.isclose(mine, float(theirs), rel_tol=1e-4, abs_tol=1e-4), (row["question"], mine, float(theirs))


def _eval_cmd(run: Path, suite: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "refinery.pipeline.cli", "eval", str(run), "--suite", str(suite), *extra]


def test_watch_beside_training(trained, tmp_path):
    """The evaluator follows a training it was started beside: results for several checkpoints,
    the first while training still runs, held-out loss falling, and it exits by itself."""
    shutil.copytree(trained / "valid", tmp_path / "valid")
    suite = write_suite(
        tmp_path,
        tasks=[
            {"task": "perplexity", "name": "heldout", "data": "valid", "seq_len": 64, "max_tokens": 2048},
            {"task": "multiple_choice", "name": "reading", "data": str(QUESTIONS)},
        ],
    )
    conf = tiny_config(tmp_path, **{"checkpoint.every": 4, "checkpoint.keep": 3})
    run = tmp_path / "run"
    env = {**ENV, "RAY_DISABLE_USAGE_STATS": "1"}
    trainer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "refinery.pipeline.cli",
            "train",
            str(conf),
            "--data",
            str(trained / "shards"),
            "--out",
            str(run),
            "--max-steps",
            "40",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    evaluator = subprocess.Popen(
        _eval_cmd(run, suite, "--watch", "--poll", "0.2"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        first_while_training = None
        deadline = time.monotonic() + 240
        while evaluator.poll() is None and time.monotonic() < deadline:
            if first_while_training is None and results(run):
                first_while_training = trainer.poll() is None
            time.sleep(0.1)
        assert trainer.wait(timeout=60) == 0, trainer.stderr.read().decode()[-2000:]
        assert evaluator.wait(timeout=30) == 0, evaluator.stderr.read().decode()[-3000:]
    finally:
        for proc in (trainer, evaluator):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert first_while_training is True
    assert (run / FINISHED).exists()
    found = results(run)
    steps = sorted({s for s, task, _ in found if task == "heldout"})
    assert len(steps) >= 3 and steps[-1] == 40, steps
    assert found[(steps[-1], "heldout", "loss")] < found[(steps[0], "heldout", "loss")]
    status = json.loads((run / "eval" / "status.json").read_text())
    assert status["trials_failed"] == 0 and status["state"] == "finished"
    # Checkpoints the trainer pruned before they were evaluated are skipped, not errors.
    assert set(status["checkpoints_evaluated"]) | set(status["checkpoints_gone"]) >= set(steps)
    assert cli(["report", str(run)]) == 0
    page = (run / "eval" / "report.html").read_text()
    assert "training loss" in page and "heldout · loss" in page and "reading · accuracy_norm" in page


def test_killed_evaluator_redoes_only_unfinished_trials(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained / "run", run)
    shutil.copytree(trained / "valid", tmp_path / "valid")
    suite = write_suite(tmp_path)
    total = 4 * len(plan(load_suite(suite)))  # four checkpoints
    trials = run / "eval" / "trials"
    proc = subprocess.Popen(
        _eval_cmd(run, suite), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        while proc.poll() is None and len(list(trials.glob("*/*/*.json"))) < 5:
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = len(list(trials.glob("*/*/*.json")))
    assert 5 <= before < total
    assert subprocess.run(_eval_cmd(run, suite), env=ENV, capture_output=True).returncode == 0
    status = json.loads((run / "eval" / "status.json").read_text())
    assert status["trials_found_done"] == before and status["trials_run"] == total - before
    # The same figures as an evaluation that was never interrupted.
    fresh = tmp_path / "fresh"
    shutil.copytree(trained / "run", fresh)
    assert subprocess.run(_eval_cmd(fresh, suite), env=ENV, capture_output=True).returncode == 0
    assert results(run) == results(fresh) and len(results(run)) == 4 * (2 + 5 + 2)


def test_failed_trials_are_retried_classified_and_do_not_stop_others(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained / "run", run)
    shutil.copytree(trained / "valid", tmp_path / "valid")
    evaluator = Evaluator(run, load_suite(write_suite(tmp_path, retries=1)), workers=2)
    for shard in (tmp_path / "valid").glob("*.arrow"):  # damaged after the trials were planned
        shard.write_bytes(shard.read_bytes()[:200])
    status = evaluator.run()
    failures = [json.loads(line) for line in (run / "eval" / "failures.jsonl").read_text().splitlines()]
    assert {f["class"] for f in failures} == {"data_error"}
    assert status["trials_failed"] > 0 and status["retries"] == status["trials_failed"]
    assert len(failures) == 2 * status["trials_failed"]  # each tried twice
    found = results(run)
    assert {task for _, task, _ in found} == {"reading"} and len({s for s, _, _ in found}) == 4


def test_ray_runner_gives_the_same_results(trained, tmp_path, ray_local):
    run = tmp_path / "run"
    shutil.copytree(trained / "run", run)
    shutil.copytree(trained / "valid", tmp_path / "valid")
    suite = load_suite(write_suite(tmp_path))
    status = Evaluator(run, suite, runner="ray", workers=2).run()
    assert status["trials_failed"] == 0 and sorted(status["checkpoints_evaluated"]) == [5, 10, 15, 20]
    local = tmp_path / "local"
    shutil.copytree(trained / "run", local)
    Evaluator(local, suite, workers=1).run()
    ours, theirs = results(run), results(local)
    assert ours.keys() == theirs.keys() and all(math.isclose(ours[k], theirs[k], rel_tol=1e-9) for k in ours)
