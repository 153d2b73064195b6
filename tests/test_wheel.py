"""The wheel is complete: built from the sources, installed into a fresh virtualenv, it runs a job
whose stages use the bundled files (lid.176, the bad-word lists) from outside the checkout
(docs/architecture.md, "Layers")."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "data" / "spine" / "inaugural-a.jsonl"
JOB = """\
input: {paths: [docs.jsonl], format: jsonl}
stages:
  - {stage: langid, languages: [en]}
  - {stage: rules, c4_badwords: {}}
  - {stage: dedup, method: minhash}
  - {stage: decontaminate, benchmarks: [evals.jsonl]}
  - {stage: classify, annotate_only: true, perplexity: {min_score: card}}
"""


def sources(dest: Path) -> Path:
    """The checkout's files as a clean clone has them: setuptools' build/ folder in the checkout
    keeps files from earlier builds, which would hide a file missing from the wheel."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = sources(tmp / "src")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(tmp / "dist"),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    (found,) = (tmp / "dist").glob("lm_refinery-*.whl")
    return found


def test_wheel_holds_every_package_and_bundled_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "refinery/stages/dedup/__init__.py" in names and "refinery/stages/dedup/minhash.py" in names
    assert "refinery/trainer/evaluation/evaluator.py" in names and "refinery/conf/eval/demo.yaml" in names
    for name in (
        "models/lid.176.ftz",
        "models/lid.176.NOTICE.md",
        "models/classifiers/quality.ftz.json",
        "models/classifiers/coherence-ngram.npz",
        "models/tokenizer/refinery-demo-8k.model",
        "blocklists/ut1/mixed_adult/domains",
        "conf/rules/badwords/en.txt",
        "conf/rules/badwords/LICENSE",
        "conf/demo.yaml",
        "conf/train/tiny.yaml",
    ):
        assert f"refinery/{name}" in names, name
    for folder in ("models", "blocklists", "conf"):  # every file, not just those named above
        on_disk = {p.relative_to(ROOT).as_posix() for p in (ROOT / folder).rglob("*") if p.is_file()}
        assert {f"refinery/{n}" for n in on_disk} <= names, folder
    assert "refinery/tokenize/__init__.py" not in names and "refinery/__init__.py" not in names
    # one import package, nothing of tests/, bench/ or data/
    assert {n.split("/")[0] for n in names} == {"refinery", "lm_refinery-0.1.0.dist-info"}
    assert {n.split("/")[1] for n in names if n.startswith("refinery/") and n.count("/") > 1} == {
        "pipeline",
        "stages",
        "classifiers",
        "tokenize",
        "loaders",
        "trainer",
        "models",
        "blocklists",
        "conf",
    }
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_installed_wheel_runs_a_job_outside_the_checkout(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    # The outer venv's third-party packages, by a path line: .pth files in a folder named this
    # way are not processed, so the outer editable install of refinery stays invisible.
    (site / "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["RAY_DISABLE_USAGE_STATS"] = "1"

    def probe(code: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(python), "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)

    assert probe("import refinery").returncode != 0, "refinery importable before the wheel is installed"
    # --ignore-installed: the outer editable lm-refinery is visible to pip, and must not be touched
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            "--ignore-installed",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        env=env,
    )

    lines = SAMPLE.read_text().splitlines()[:30]
    # two copies of documents that pass langid and rules, for dedup to drop
    dups = [json.dumps({**json.loads(lines[i]), "id": f"dup-{i}"}) for i in (1, 2)]
    (tmp_path / "docs.jsonl").write_text("\n".join(lines + dups) + "\n")
    quoted = " ".join(json.loads(lines[1])["text"].split()[:40])  # one kept document quotes a benchmark item
    (tmp_path / "evals.jsonl").write_text(json.dumps({"question": quoted, "answer": "a"}) + "\n")
    (tmp_path / "job.yaml").write_text(JOB)
    run = subprocess.run(
        [str(venv / "bin" / "refinery"), "run", "job.yaml", "--out", "run", "--runner", "local"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    stats = {
        s: json.loads((tmp_path / "run" / "stats" / f"{s}.json").read_text())
        for s in ("langid", "rules", "dedup", "decontaminate", "classify")
    }
    for name, s in stats.items():
        assert s["docs_in"] == s["docs_kept"] + s["docs_dropped"] + s["docs_errored"], (name, s)
    assert stats["langid"]["docs_in"] == 32
    assert stats["rules"]["failed_by_rule"].get("c4_badwords", 0) >= 1, stats["rules"]  # the bundled en.txt
    assert stats["dedup"]["docs_dropped"] >= 1, stats["dedup"]
    assert stats["decontaminate"]["dropped_by_reason"] == {"contaminated": 1}, stats["decontaminate"]
    # the bundled classifiers, blocklists and perplexity model with its card's threshold
    scored = stats["classify"]["histograms"]
    assert {"quality_hq", "safety_spam", "badword_rate", "perplexity", "quality_score"} <= set(scored), scored
    assert sum(scored["perplexity"]["counts"]) == stats["classify"]["docs_in"] > 0, scored["perplexity"]

    out = probe(
        "import refinery.pipeline.cli as c, refinery.stages.langid as l, refinery.stages.rules.c4 as r;"
        "from refinery.pipeline.resources import bundled;"
        "print(c.__file__); print(l.DEFAULT_MODEL); print(bundled(r.BADWORDS_FOLDER))"
    )
    assert out.returncode == 0, out.stderr
    for line in out.stdout.split():
        assert Path(line).resolve().is_relative_to(venv.resolve()), line
        assert not Path(line).resolve().is_relative_to(ROOT), line
    # the job itself used the installed copy: the model path it resolved is recorded in the run
    job = yaml.safe_load((tmp_path / "run" / "job.yaml").read_text())
    model = Path(job["stages"][0]["model"])
    assert model.resolve() == (site / "refinery" / "models" / "lid.176.ftz").resolve(), model
