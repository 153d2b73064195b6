"""The train loop on real shards: loss goes down, SIGKILL + `--resume auto` continues the exact
loss sequence, DDP over two gloo ranks matches one process, checkpoints stay atomic and few."""

import gzip
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest
import torch
import yaml

from refinery.tokenize.shards import write_shards
from refinery.tokenize.tokenizer import Tokenizer
from refinery.trainer.checkpoint import CheckpointManager, complete_steps, load_model, read_trainer_state
from refinery.trainer.config import TrainConfig, load_train_config
from refinery.trainer.hf import load_hf
from refinery.trainer.loop import train

REPO = Path(__file__).resolve().parents[1]
TOKENIZER = REPO / "models" / "tokenizer" / "refinery-demo-8k.model"
TEXTS = REPO / "tests" / "data" / "spine" / "inaugural-a.jsonl"
HELD_OUT = REPO / "tests" / "data" / "spine" / "inaugural-b.jsonl.gz"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
STEPS, EVERY = 16, 4


def make_shards(folder: Path, texts: Path = TEXTS) -> Path:
    """Token shards of US inaugural addresses (public domain), several shards and blocks."""
    tok = Tokenizer(TOKENIZER, threads=1)
    raw = gzip.decompress(texts.read_bytes()) if texts.suffix == ".gz" else texts.read_bytes()
    rows = [json.loads(line) for line in raw.decode().splitlines()]
    ids = tok.encode_arrow(pa.array([r["text"] for r in rows], pa.large_string()))
    batch = pa.record_batch(
        [ids, pa.array([r.get("id", f"{texts.name}#{i}") for i, r in enumerate(rows)])], names=["input_ids", "id"]
    )
    write_shards([batch], folder, tok.info(add_bos=False, add_eos=False), shard_bytes=64 << 10, block_tokens=4096)
    return folder


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_shards(tmp_path_factory.mktemp("trainer") / "shards")


def tiny_config(tmp: Path, **changes) -> Path:
    raw = yaml.safe_load((REPO / "conf" / "train" / "tiny.yaml").read_text())
    for key, value in changes.items():
        section, _, field = key.rpartition(".")
        (raw.setdefault(section, {}) if section else raw)[field] = value
    path = tmp / "train.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def losses(out: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())]


def test_conf_train_presets_validate():
    for path in sorted((REPO / "conf" / "train").glob("*.yaml")):
        cfg = load_train_config(path)
        assert cfg.model_config_for(8000).num_params() > 0


_DRIVER = """
import os, signal, sys
from refinery.pipeline import cli, storage
from refinery.trainer import checkpoint, loop
mode, k = sys.argv[1], int(sys.argv[2])
if mode == "step":
    write = loop._Writer.write
    def killing_write(self, record):
        write(self, record)
        if record["step"] == k:
            os.kill(os.getpid(), signal.SIGKILL)
    loop._Writer.write = killing_write
else:
    write, seen = checkpoint.atomic_write, []
    def killing_write(fs, path, data):
        if path.endswith("/trainer.pt"):
            seen.append(path)
            if len(seen) == k:
                folder, name = os.path.split(path)
                with open(os.path.join(folder, storage.temporary_name(name)), "wb") as fh:
                    fh.write(data[: len(data) // 2])
                os.kill(os.getpid(), signal.SIGKILL)
        write(fs, path, data)
    checkpoint.atomic_write = killing_write
sys.exit(cli.main(sys.argv[3:]))
"""


def _killed_run(mode: str, k: int, conf: Path, shards: Path, out: Path, steps: int, env: dict | None = None) -> None:
    cmd = [
        sys.executable,
        "-c",
        _DRIVER,
        mode,
        str(k),
        "train",
        str(conf),
        "--data",
        str(shards),
        "--out",
        str(out),
        "--max-steps",
        str(steps),
    ]
    proc = subprocess.run(cmd, env={**ENV, **(env or {})}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def reference(shards, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reference")
    valid = make_shards(tmp / "valid", HELD_OUT)
    conf = tiny_config(
        tmp,
        **{
            "checkpoint.every": EVERY,
            "data.valid": str(valid),
            "data.valid_every": 8,
            "data.valid_batches": 2,
            "tensorboard": True,
        },
    )
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(load_train_config(conf), str(shards), tmp / "run", max_steps=STEPS)
    finally:
        torch.set_num_threads(before)
    return conf, losses(tmp / "run"), tmp / "run"


def test_tiny_model_learns_on_demo_job_shards(tmp_path, one_thread):
    """The shards of `conf/demo.yaml` (real web pages through every stage) train the tiny model."""
    run = tmp_path / "demo"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "refinery.pipeline.cli",
            "run",
            str(REPO / "conf" / "demo.yaml"),
            "--out",
            str(run),
            "--runner",
            "local",
        ],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    conf = load_train_config(tiny_config(tmp_path))
    train(conf, str(run / "shards"), tmp_path / "train", max_steps=20)
    seq = losses(tmp_path / "train")
    assert [s for s, _ in seq] == list(range(1, 21))
    first, last = sum(v for _, v in seq[:4]) / 4, sum(v for _, v in seq[-4:]) / 4
    assert first > 8.5 and last < first - 1.0, (first, last)


def test_checkpoints_validation_and_export(reference):
    conf, seq, run = reference
    assert [s for s, _ in seq] == list(range(1, STEPS + 1))
    assert seq[-1][1] < seq[0][1] - 1.0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    valid = [(r["step"], r["valid_loss"]) for r in records if "valid_loss" in r]
    assert [s for s, _ in valid] == [8, 16] and valid[1][1] < valid[0][1] < 9.0
    # per-step figures: model TFLOP/s from tokens/s (no MFU on a CPU), the process's peak memory
    for r in records:
        assert r["tflops_per_device"] > 0 and "mfu" not in r and r["peak_memory_gib"] > 0.05
        assert r["tokens"] == r["step"] * 8 * 64  # global_batch_size x seq_len per step
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    # keep=3 of the checkpoints at 4, 8, 12, 16; the pointer names the newest
    ckpts = sorted(p.name for p in (run / "checkpoints").glob("step_*"))
    assert ckpts == ["step_00000008", "step_00000012", "step_00000016"]
    assert (run / "checkpoints" / "latest").read_text().strip() == "step_00000016"
    state = torch.load(run / "checkpoints" / "step_00000016" / "rank-00000.pt", weights_only=True)
    assert state["loader"]["consumed"] == STEPS * 8 and set(state["rng"]) >= {"torch", "python", "numpy"}
    trainer_state = read_trainer_state(run / "checkpoints", 16)
    assert trainer_state["step"] == STEPS and trainer_state["scheduler"]["last_epoch"] == STEPS
    model = load_hf(run / "hf")
    assert model.cfg.vocab_size == 8000
    with pytest.raises(FileExistsError, match="--resume auto"):
        train(load_train_config(conf), "unused", run, max_steps=STEPS)
    assert torch.equal(
        model.state_dict()["output.weight"], load_model(run / "checkpoints", 16).state_dict()["output.weight"]
    )


def test_export_a_checkpoint(reference, tmp_path, capsys):
    """`refinery export` gathers one checkpoint's shards into an InternLM2 or a LLaMA folder."""
    from refinery.pipeline import cli

    _, _, run = reference
    assert cli.main(["export", str(run), "--step", "12", "--out", str(tmp_path / "hf12")]) == 0
    exported = load_hf(tmp_path / "hf12").state_dict()
    saved = load_model(run / "checkpoints", 12).state_dict()
    assert exported.keys() == saved.keys() and all(torch.equal(exported[k], saved[k]) for k in saved)
    assert not torch.equal(exported["output.weight"], load_hf(run / "hf").state_dict()["output.weight"])
    assert cli.main(["export", str(run / "checkpoints"), "--out", str(tmp_path / "llama"), "--llama"]) == 0
    assert "step 16" in capsys.readouterr().out and (tmp_path / "llama" / "config.json").exists()
    assert cli.main(["export", str(run), "--step", "4", "--out", str(tmp_path / "gone")]) == 2  # pruned by keep=3
    assert "no complete checkpoint at step 4" in capsys.readouterr().err


@pytest.mark.parametrize("seed", [7])
def test_sigkill_at_random_step_then_resume_matches(shards, reference, tmp_path, one_thread, seed):
    conf, expected, _ = reference
    k = random.Random(seed).randrange(EVERY + 1, STEPS - 1)
    _killed_run("step", k, conf, shards, tmp_path / "run", STEPS)
    assert len(losses(tmp_path / "run")) == k
    assert CheckpointManager(tmp_path / "run" / "checkpoints").latest_step() <= k
    train(load_train_config(conf), str(shards), tmp_path / "run", max_steps=STEPS, resume=True)
    assert losses(tmp_path / "run") == expected, f"killed at step {k}"


def test_sigkill_during_checkpoint_write_then_resume_matches(shards, reference, tmp_path, one_thread):
    conf, expected, _ = reference
    _killed_run("checkpoint", 3, conf, shards, tmp_path / "run", STEPS)
    ckpts = tmp_path / "run" / "checkpoints"
    # the third checkpoint (step 12) is half written: its folder has no meta.json and a partial temp file
    assert not (ckpts / "step_00000012" / "meta.json").exists()
    assert any(p.name.endswith(".tmp") for p in (ckpts / "step_00000012").iterdir())
    assert CheckpointManager(ckpts).latest_step() == 8
    train(load_train_config(conf), str(shards), tmp_path / "run", max_steps=STEPS, resume=True)
    assert losses(tmp_path / "run") == expected
    assert not [p for p in ckpts.rglob("*") if p.name.endswith(".tmp")]


def test_sigterm_checkpoints_the_finished_step_then_resume_matches(shards, reference, tmp_path, one_thread):
    """A preemption notice (SIGTERM) stops at the next step boundary with a checkpoint of that step."""
    conf, expected, _ = reference
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "refinery.pipeline.cli",
        "train",
        str(conf),
        "--data",
        str(shards),
        "--out",
        str(out),
        "--max-steps",
        str(STEPS),
    ]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    metrics = out / "metrics.jsonl"
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 5):
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=300) == 128 + signal.SIGTERM, proc.stdout.read()
    done = len(losses(out))
    assert done < STEPS and CheckpointManager(out / "checkpoints").latest_step() == done
    train(load_train_config(conf), str(shards), out, max_steps=STEPS, resume=True)
    assert losses(out) == expected


def _ranks(conf: Path, shards: Path, out: Path, steps: int, ranks: int, resume: bool = False) -> None:
    cmd = [
        sys.executable,
        "-m",
        "refinery.pipeline.cli",
        "train",
        str(conf),
        "--data",
        str(shards),
        "--out",
        str(out),
        "--max-steps",
        str(steps),
        "--nproc-per-node",
        str(ranks),
        *(["--resume", "auto"] if resume else []),
    ]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_gloo_ranks_match_one_process(shards, tmp_path, one_thread, strategy):
    """Two ranks with 2 windows each (replicated, or sharded with FSDP2) take the same 4 windows
    per step as one rank with 4, and reach the same losses; each rank writes its own shards of
    the state, and the checkpoint resumes on another number of ranks."""
    steps = 3
    single = tiny_config(tmp_path, micro_batch_size=4, global_batch_size=4)
    train(load_train_config(single), str(shards), tmp_path / "one", max_steps=steps)
    (tmp_path / "ddp").mkdir()
    double = tiny_config(tmp_path / "ddp", micro_batch_size=2, global_batch_size=4, **{"parallel.strategy": strategy})
    run = tmp_path / "ddp" / "run"
    _ranks(double, shards, run, steps, 2)
    one, two = losses(tmp_path / "one"), losses(run)
    assert [s for s, _ in two] == list(range(1, steps + 1))
    for (_, a), (_, b) in zip(one, two):
        assert a == pytest.approx(b, rel=1e-5)
    final = run / "checkpoints" / f"step_{steps:08d}"
    assert {p.name for p in final.iterdir()} >= {"rank-00000.pt", "rank-00001.pt", "trainer.pt", "meta.json", "state"}
    assert len(list((final / "state").glob("*.distcp"))) == 2  # one file of shards per rank
    train(load_train_config(single), str(shards), tmp_path / "long", max_steps=2 * steps)
    expected = losses(tmp_path / "long")[steps:]
    resumed = {"2 -> 1": run}
    if strategy == "fsdp":
        # the same checkpoint continued on 4 ranks (1 window each), and the 1-process run on 2 ranks
        shutil.copytree(run, tmp_path / "four")
        (tmp_path / "quad").mkdir()
        quad = tiny_config(
            tmp_path / "quad", micro_batch_size=1, global_batch_size=4, **{"parallel.strategy": strategy}
        )
        _ranks(quad, shards, tmp_path / "four", 2 * steps, 4, resume=True)
        _ranks(double, shards, tmp_path / "one", 2 * steps, 2, resume=True)
        resumed.update({"2 -> 4": tmp_path / "four", "1 -> 2": tmp_path / "one"})
    train(load_train_config(double), str(shards), run, max_steps=2 * steps, resume=True)
    for how, out in resumed.items():
        got = losses(out)[steps:]
        assert [s for s, _ in got] == list(range(steps + 1, 2 * steps + 1)), how
        for (_, a), (_, b) in zip(expected, got):
            assert a == pytest.approx(b, rel=1e-4), how  # the ranks' float sums differ in the last bits
    # the export holds the trained weights, unsharded
    assert torch.equal(
        load_hf(run / "hf").state_dict()["output.weight"],
        load_model(run / "checkpoints", 2 * steps).state_dict()["output.weight"],
    )


def _running_with(marker: str) -> list[int]:
    """Live processes whose command line names `marker`."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker in cmdline.read_bytes().decode(errors="replace"):
                pids.append(int(cmdline.parent.name))
        except OSError:
            continue
    return pids


def test_sigkill_of_two_fsdp_ranks_then_resume_on_one(shards, reference, tmp_path, one_thread):
    """Two FSDP ranks killed mid-run (every process of the job); one process resumes from their
    sharded checkpoint and continues the uninterrupted curve."""
    conf, expected, _ = reference
    raw = yaml.safe_load(conf.read_text())
    raw.update(micro_batch_size=raw["global_batch_size"] // 2, parallel={"strategy": "fsdp"})
    (tmp_path / "two").mkdir()
    two = tmp_path / "two" / "train.yaml"
    two.write_text(yaml.safe_dump(raw))
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "refinery.pipeline.cli",
        "train",
        str(two),
        "--data",
        str(shards),
        "--out",
        str(out),
        "--max-steps",
        str(STEPS),
        "--nproc-per-node",
        "2",
    ]
    proc = subprocess.Popen(
        cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    metrics = out / "metrics.jsonl"
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= EVERY + 3):
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    deadline = time.monotonic() + 30
    while _running_with(str(out)) and time.monotonic() < deadline:  # torchrun's ranks die with it
        time.sleep(0.05)
    assert not _running_with(str(out)), "a rank outlived its launcher"
    assert CheckpointManager(out / "checkpoints").latest_step() >= EVERY
    train(load_train_config(conf), str(shards), out, max_steps=STEPS, resume=True)
    got = losses(out)
    assert [s for s, _ in got] == [s for s, _ in expected]
    for (_, a), (_, b) in zip(expected, got):
        assert a == pytest.approx(b, rel=1e-4)


def test_checkpoints_on_an_object_store(shards, reference, s3, tmp_path, one_thread):
    """checkpoint.folder on S3 (moto): a run killed after step 9 resumes from the store to the
    uninterrupted curve, and a checkpoint's model is read back from it by the export."""
    conf, expected, _ = reference
    folder = f"s3://{s3.bucket('checkpoints')}/run"
    raw = yaml.safe_load(conf.read_text())
    raw["checkpoint"].update(folder=folder, keep=2)
    (tmp_path / "conf").mkdir()
    remote = tmp_path / "conf" / "train.yaml"
    remote.write_text(yaml.safe_dump(raw))
    _killed_run("step", 9, remote, shards, tmp_path / "run", STEPS, env=s3.env)
    done = complete_steps(folder)  # step 8's may still have been in flight when the kill came
    assert done[:1] == [4] and set(done) <= {4, 8} and not (tmp_path / "run" / "checkpoints").exists()
    train(load_train_config(remote), str(shards), tmp_path / "run", max_steps=STEPS, resume=True)
    assert losses(tmp_path / "run") == expected
    assert complete_steps(folder) == [12, 16]  # keep=2, pruned on the store
    from refinery.pipeline import cli

    assert cli.main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "hf")]) == 0
    assert torch.equal(
        load_hf(tmp_path / "hf").state_dict()["output.weight"],
        load_hf(tmp_path / "run" / "hf").state_dict()["output.weight"],
    )


def test_hsdp_on_a_two_by_two_mesh_matches_one_process(shards, tmp_path, one_thread):
    """HSDP: 4 ranks in 2 replica groups of 2 shards each reach one process's losses, and its
    checkpoint (shards replicated across groups) resumes in one process."""
    steps = 2
    single = tiny_config(tmp_path, micro_batch_size=4, global_batch_size=4)
    train(load_train_config(single), str(shards), tmp_path / "long", max_steps=2 * steps)
    (tmp_path / "hsdp").mkdir()
    hsdp = tiny_config(
        tmp_path / "hsdp",
        micro_batch_size=1,
        global_batch_size=4,
        **{"parallel.strategy": "fsdp", "parallel.replicate": 2},
    )
    _ranks(hsdp, shards, tmp_path / "run", steps, 4)
    train(load_train_config(single), str(shards), tmp_path / "run", max_steps=2 * steps, resume=True)
    got, expected = losses(tmp_path / "run"), losses(tmp_path / "long")
    assert [s for s, _ in got] == list(range(1, 2 * steps + 1))
    for (_, a), (_, b) in zip(expected, got):
        assert a == pytest.approx(b, rel=1e-4)
    with pytest.raises(ValueError, match="replicate 3 does not divide 4 ranks"):
        load_train_config(tiny_config(tmp_path, **{"parallel.replicate": 3})).parallel.mesh_shape(4)


def test_compiled_layers_match_eager(shards, tmp_path, one_thread):
    eager = tiny_config(tmp_path)
    train(load_train_config(eager), str(shards), tmp_path / "eager", max_steps=2)
    (tmp_path / "c").mkdir()
    train(load_train_config(tiny_config(tmp_path / "c", compile=True)), str(shards), tmp_path / "compiled", max_steps=2)
    for (_, a), (_, b) in zip(losses(tmp_path / "eager"), losses(tmp_path / "compiled")):
        assert a == pytest.approx(b, rel=1e-4)


def test_config_errors_name_file_and_key(tmp_path):
    from refinery.pipeline.config import ConfigError

    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {preset: tiny}\noptim: {lr: -1}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: optim.lr"):
        load_train_config(bad)
    bad.write_text("model: {preset: 3B}\n")
    with pytest.raises(ConfigError, match="unknown preset"):
        load_train_config(bad)
    assert isinstance(load_train_config(REPO / "conf" / "train" / "tiny.yaml"), TrainConfig)


def _supervise(conf: Path, shards: Path, out: Path, *extra: str) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "refinery.pipeline.cli",
        "train",
        str(conf),
        "--data",
        str(shards),
        "--out",
        str(out),
        "--max-steps",
        str(STEPS),
        "--supervise",
        *extra,
    ]
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_supervisor_restarts_killed_run_and_records_class(shards, reference, tmp_path):
    conf, expected, _ = reference
    out = tmp_path / "run"
    sup = _supervise(conf, shards, out, "--max-restarts", "2")
    metrics = out / "metrics.jsonl"
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
        assert sup.poll() is None, sup.stdout.read()
        time.sleep(0.02)
    child = json.loads((out / "supervisor.json").read_text())["child_pid"]
    os.kill(child, signal.SIGKILL)  # the injected fault: a lost worker
    assert sup.wait(timeout=300) == 0, sup.stdout.read()
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert len(failures) == 1
    assert failures[0]["class"] == "killed" and failures[0]["restarted"] and failures[0]["returncode"] == -9
    summary = json.loads((out / "supervisor.json").read_text())
    assert summary["status"] == "succeeded" and summary["attempts"] == 2
    assert losses(out) == expected


def test_supervisor_does_not_restart_on_corrupt_shard(shards, reference, tmp_path):
    conf = reference[0]
    bad = tmp_path / "shards"
    shutil.copytree(shards, bad)
    for victim in bad.glob("*.arrow"):  # one flipped byte in every shard: the first read meets one
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0xFF
        victim.write_bytes(bytes(data))
    sup = _supervise(conf, bad, tmp_path / "run", "--max-restarts", "3")
    assert sup.wait(timeout=300) == 1, sup.stdout.read()
    failures = [json.loads(line) for line in (tmp_path / "run" / "failures.jsonl").read_text().splitlines()]
    assert [(f["class"], f["restarted"]) for f in failures] == [("data_error", False)], failures
    assert "ShardCorrupt" in failures[0]["evidence"] or "checksum" in failures[0]["evidence"]
