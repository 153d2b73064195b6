"""Does refined data train a better model? The same small InternLM2 trained on raw and on refined tokens.

    python bench/ablation.py [--data ../shared/data] [--out DIR] [--tokens 655360] [--seeds 3]

Why: every other benchmark measures a stage by its own yardstick (precision, speed); this one asks
what the whole pipeline is for. It builds a crawl-like raw corpus from real text, runs refinery's
pipeline on it (`refined`), tokenizes the same corpus with no filtering (`raw`, the tokenize stage
alone), trains the same model on the same number of tokens of each, with several seeds, and scores
every model on clean text of a domain that is in neither corpus.

The raw corpus (JSONL, written into OUT/corpus, one document per line with its `source`):
  good prose  nltk inaugural and state_union (speeches); the visible text of the trafilatura and
              article-extraction benchmark pages, page chrome included, as a crawl's text
              extraction keeps it (news and blogs); the docstrings of pinned PyPI wheels, one
              document per module (API documentation); the Python reference topics (pydoc);
              package READMEs and the SPDX license texts (data/classifiers); every translation of
              the UDHR (other languages).
  chrome      the navigation link texts of the benchmark pages; Sphinx theme strings.
  spam        SMS spam messages, a dozen per document.
  near-dups   good documents copied again (about one copy per document, heavy-tailed), a third of
              the copies exact, the rest with a few words changed and real navigation lines of
              another page put above and below.
  junk        keyword lists (lingua single words and word pairs, 75 languages), the words of a
              real document shuffled, a real line repeated, tables of random numbers.
Held out entirely (never in the corpus): nltk genesis (scripture narrative; its two English
translations are the evaluation text, cut into 10 documents each) and lingua's English sentences
(web and news sentences of the Leipzig corpora, 25 per document).

Training: InternLM2 `tiny` (1.1M parameters with the 8k demo tokenizer), sequences of 256 tokens,
64 per step, the trainer's `refinery train` command; `--tokens` per run (rounded down to whole
steps), seeds 0..N-1 (the seed sets both the initialization and the data order). The held-out
loss is the mean token cross-entropy over every full window of the held-out shards.
"""

from __future__ import annotations

import argparse
import ast
import glob
import gzip
import hashlib
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import torch
import yaml

from refinery.classifiers import corpora
from refinery.loaders import TokenDataset, TokenLoader
from refinery.trainer.hf import load_hf

ROOT = Path(__file__).resolve().parents[1]
SPM_MODEL = ROOT / "models" / "tokenizer" / "refinery-demo-8k.model"
CLASSIFIER_DATA = ROOT / "data" / "classifiers"
# (package, version, license): wheels whose docstrings are the API-documentation domain.
WHEELS = [
    ("sympy", "1.14.0", "BSD-3-Clause"),
    ("numpy", "2.4.6", "BSD-3-Clause"),
    ("networkx", "3.6.1", "BSD-3-Clause"),
    ("django", "5.2.17", "BSD-3-Clause"),
]
CORPUS_FILES = 8
SEQ_LEN, BATCH = 256, 64
MIN_DOCSTRING_CHARS = 200
BLOCK_TAGS = frozenset(
    "p div li ul ol h1 h2 h3 h4 h5 h6 br tr td th table section article header footer nav aside "
    "blockquote pre form dd dt dl title figure figcaption main option button label".split()
)


# ---------------------------------------------------------------- real sources


def speeches(data: Path) -> list[tuple[str, str]]:
    return list(corpora.nltk_plaintext(data, "inaugural")) + list(corpora.nltk_plaintext(data, "state_union"))


def page_text(html: bytes) -> str:
    """All visible text of a page, a line per block element: what a crawl's plain-text
    extraction (Common Crawl's WET files) holds, menus, footers and share buttons included."""
    import lxml.html

    root = lxml.html.fromstring(html)
    for node in root.xpath("//script | //style | //noscript | //template | //svg"):
        node.drop_tree()
    for node in root.iter():
        if isinstance(node.tag, str) and node.tag in BLOCK_TAGS:
            node.tail = "\n" + (node.tail or "")
    lines = (" ".join(line.split()) for line in root.text_content().splitlines())
    return "\n".join(line for line in lines if line)


def pages(data: Path) -> list[tuple[str, str]]:
    files = sorted((data / "trafilatura_eval" / "html").glob("*.html.gz"))
    files += sorted((data / "article_extraction_benchmark" / "html").glob("*.html.gz"))
    out = []
    for path in files:
        try:
            out.append((f"page/{path.name}", page_text(gzip.decompress(path.read_bytes()))))
        except ValueError:
            continue
    return out


def fetch_wheels(cache: Path) -> list[Path]:
    """The pinned wheels, downloaded once into `cache` by pip (a registry or its local mirror)."""
    cache.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, version, _ in WHEELS:
        found = sorted(cache.glob(f"{name}-{version}-*.whl"))
        if not found:
            cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:"]
            done = subprocess.run(cmd + ["-d", str(cache), f"{name}=={version}"], capture_output=True, text=True)
            found = sorted(cache.glob(f"{name}-{version}-*.whl"))
            if done.returncode or not found:
                raise SystemExit(
                    f"could not download {name}=={version} with pip (offline, or no package index?): "
                    f"{done.stderr.strip()[-500:]}\nput the wheel into {cache} by hand to go on"
                )
        paths.append(found[0])
    return paths


def module_docstrings(source: bytes) -> str:
    """A module's docstrings (its own, its classes' and functions'), long ones only, in order."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return ""
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    docs = [ast.get_docstring(node) or "" for node in ast.walk(tree) if isinstance(node, kinds)]
    return "\n\n".join(doc for doc in docs if len(doc) >= MIN_DOCSTRING_CHARS)


def docstrings(wheels: list[Path]) -> list[tuple[str, str]]:
    out = []
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as z:
            for name in sorted(z.namelist()):
                if name.endswith(".py") and "/tests/" not in name:
                    text = module_docstrings(z.read(name))
                    if text:
                        out.append((f"docstrings/{name}", text))
    return out


def registry_extracts() -> list[tuple[str, str]]:
    docs = []
    for name in ("package_readmes", "spdx_license_texts"):
        docs += [(doc_id, text) for doc_id, _, text in corpora.extract_documents(CLASSIFIER_DATA, name)]
    return docs


def udhr_all(data: Path) -> list[tuple[str, str]]:
    with zipfile.ZipFile(data / "nltk_corpora" / "udhr2.zip") as z:
        return [
            (f"udhr/{Path(n).stem}", z.read(n).decode("utf-8", "replace"))
            for n in sorted(z.namelist())
            if n.endswith(".txt")
        ]


def good_sources(data: Path, wheels: list[Path]) -> dict[str, list[tuple[str, str]]]:
    return {
        "speeches": speeches(data),
        "web pages": pages(data),
        "API docstrings": docstrings(wheels),
        "Python reference": list(corpora.python_doc_topics()),
        "READMEs and licenses": registry_extracts(),
        "UDHR, every language": udhr_all(data),
    }


# ---------------------------------------------------------------- crawl-like noise


def chrome(data: Path) -> list[tuple[str, str]]:
    docs = list(corpora.navigation(data))
    docs += [(doc_id, text) for doc_id, _, text in corpora.extract_documents(CLASSIFIER_DATA, "sphinx_theme_strings")]
    return docs


def spam(data: Path, per_doc: int = 12) -> list[tuple[str, str]]:
    messages = [text for _, label, text in corpora.sms(data) if label == "spam"]
    return [(f"spam/{i}", "\n".join(messages[i : i + per_doc])) for i in range(0, len(messages), per_doc)]


def keyword_lists(data: Path, rng: random.Random) -> list[tuple[str, str]]:
    folder = data / "lingua_langid_testdata"
    docs = []
    for kind in ("single-words", "word-pairs"):
        for path in sorted((folder / kind).glob("*.txt.gz")):
            words = gzip.decompress(path.read_bytes()).decode("utf-8", "replace").split("\n")
            i = 0
            while i < len(words):
                n = rng.randint(30, 200)
                sep = rng.choice([", ", " ", " | ", "\n"])
                docs.append((f"keywords/{kind}/{path.name}/{i}", sep.join(w for w in words[i : i + n] if w)))
                i += n
    return docs


def shuffled_words(doc: tuple[str, str], rng: random.Random) -> tuple[str, str]:
    words = doc[1].split()
    rng.shuffle(words)
    return f"shuffled/{doc[0]}", " ".join(words)


def repeated_line(doc: tuple[str, str], rng: random.Random) -> tuple[str, str]:
    lines = [line for line in doc[1].splitlines() if len(line) > 20] or [doc[1][:200]]
    return f"repeated/{doc[0]}", "\n".join([rng.choice(lines)] * rng.randint(20, 200))


def number_table(i: int, rng: random.Random) -> tuple[str, str]:
    cols = rng.randint(3, 9)
    rows = [" ".join(f"col{c}" for c in range(cols))]
    rows += [
        " ".join(f"{rng.uniform(-1e4, 1e4):.{rng.randint(0, 4)}f}" for _ in range(cols))
        for _ in range(rng.randint(50, 400))
    ]
    return f"table/{i}", "\n".join(rows)


def copies(rng: random.Random) -> int:
    """How often a crawl holds a page again: none for half, then heavy-tailed (mean about 1)."""
    if rng.random() < 0.5:
        return 0
    n = 1
    while rng.random() < 0.5 and n < 8:
        n += 1
    return n


def near_duplicate(doc: tuple[str, str], k: int, nav: list[str], rng: random.Random) -> tuple[str, str]:
    """Copy `k` of a document: a third exact, the rest with 1% of the words replaced by others of
    the same document and another page's navigation lines above and below."""
    if k % 3 == 0:
        return f"{doc[0]}#copy{k}", doc[1]
    words = re.split(r"(\s+)", doc[1])
    pool = words[::2] or [""]
    for i in range(0, len(words), 2):
        if rng.random() < 0.01:
            words[i] = rng.choice(pool)
    head, foot = rng.choice(nav), rng.choice(nav)
    head, foot = "\n".join(head.splitlines()[:8]), "\n".join(foot.splitlines()[-8:])
    return f"{doc[0]}#copy{k}", f"{head}\n{''.join(words)}\n{foot}"


def build_corpus(data: Path, wheels: list[Path], seed: int = 0) -> tuple[list[dict], dict[str, list[int]]]:
    """The raw corpus as rows (id, text, source) in a shuffled order, and per source
    [documents, characters]."""
    rng = random.Random(seed)
    good = good_sources(data, wheels)
    nav = [text for _, text in corpora.navigation(data)]
    parts: dict[str, list[tuple[str, str]]] = dict(good)
    flat = [doc for docs in good.values() for doc in docs]
    parts["near-duplicates"] = [near_duplicate(d, k, nav, rng) for d in flat for k in range(1, copies(rng) + 1)]
    parts["page chrome"] = chrome(data)
    parts["spam"] = spam(data)
    parts["keyword lists"] = keyword_lists(data, rng)
    parts["shuffled words"] = [shuffled_words(d, rng) for d in rng.sample(flat, len(flat) // 6)]
    parts["repeated lines"] = [repeated_line(d, rng) for d in rng.sample(flat, len(flat) // 20)]
    parts["number tables"] = [number_table(i, rng) for i in range(len(flat) // 20)]
    rows = [
        {"id": doc_id, "text": text, "source": name} for name, docs in parts.items() for doc_id, text in docs if text
    ]
    rng.shuffle(rows)
    sizes = {name: [sum(1 for _, t in docs if t), sum(len(t) for _, t in docs)] for name, docs in parts.items()}
    return rows, sizes


def held_out(data: Path) -> dict[str, list[dict]]:
    """Clean text of two sources kept out of the corpus entirely."""
    genesis = [
        {"id": f"{name}/{i}", "text": text}
        for name in ("english-kjv", "english-web")
        for i, (_, text) in enumerate(corpora.genesis(data, [name], parts=10))
    ]
    lines = gzip.decompress((data / "lingua_langid_testdata" / "sentences" / "en.txt.gz").read_bytes()).decode()
    sentences = [s for s in lines.splitlines() if s.strip()]
    leipzig = [{"id": f"lingua/{i}", "text": " ".join(sentences[i : i + 25])} for i in range(0, len(sentences), 25)]
    return {"genesis (en)": genesis, "Leipzig sentences (en)": leipzig}


def write_jsonl(rows: list[dict], folder: Path, files: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for f in range(files):
        with open(folder / f"part-{f:02d}.jsonl", "w", encoding="utf-8") as out:
            for row in rows[f::files]:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------- pipeline jobs


def tokenize_stage() -> dict:
    return {"stage": "tokenize", "tokenizer": str(SPM_MODEL)}


def refined_stages() -> list[dict]:
    """conf/demo.yaml's stages for text input (no extract; no long-context routing, which drops
    nothing), with C4's line filter rewriting a page to its kept lines, as FineWeb runs it."""
    return [
        {"stage": "langid", "languages": ["en"], "threshold": 0.65},
        {"stage": "normalize"},
        {"stage": "rules", "c4_quality": {"remove_lines": True}},
        {"stage": "pii"},
        {"stage": "dedup", "method": "minhash", "ngram": 5, "num_perm": 128, "threshold": 0.7},
        {"stage": "decontaminate", "benchmarks": [str(ROOT / "data" / "benchmarks" / "*.jsonl")], "ngram": 13},
        {
            "stage": "classify",
            "classifiers": {
                "quality": {"path": str(ROOT / "models" / "classifiers" / "quality.ftz")},
                "safety": {"path": str(ROOT / "models" / "classifiers" / "safety.ftz"), "max": {"spam": 0.5}},
            },
            "perplexity": {"path": str(ROOT / "models" / "classifiers" / "perplexity.npz"), "min_score": "card"},
        },
        tokenize_stage(),
    ]


def reused(out: Path, finished: Path, made_from: bytes) -> bool:
    """Whether `out` is a finished run (`finished` exists) of the same inputs and settings
    (`made_from`, recorded beside it by the run that made it); if not, it is cleared for a new run."""
    stamp = out.with_name(out.name + ".sha256")
    digest = hashlib.sha256(made_from).hexdigest()
    if finished.exists() and stamp.is_file() and stamp.read_text() == digest:
        return True
    shutil.rmtree(out, ignore_errors=True)
    stamp.write_text(digest)
    return False


def named_files(value) -> list[Path]:
    """The files a stage's settings name (paths and globs), each with its model card beside it
    (`<file>.json`) where there is one: a rebuilt model changes what the stage does."""
    if isinstance(value, dict):
        return [f for v in value.values() for f in named_files(v)]
    if isinstance(value, list):
        return [f for v in value for f in named_files(v)]
    if not isinstance(value, str):
        return []
    files = [Path(p) for p in sorted(glob.glob(value)) if Path(p).is_file()]
    return [g for f in files for g in (f, f.with_name(f.name + ".json")) if g.is_file()]


def run_job(inputs: Path, stages: list[dict], run: Path, workers: int) -> Path:
    """Run a job on `inputs/*.jsonl` once (a finished run of the same files, job and named model
    files is reused); returns its shard folder."""
    job = {"input": {"paths": [str(inputs / "*.jsonl")], "format": "jsonl"}, "stages": stages}
    job |= {"runner": "local", "workers": workers}
    text = yaml.safe_dump(job, sort_keys=False)
    read = sorted(inputs.glob("*.jsonl")) + named_files(stages)
    made_from = text.encode() + b"".join(p.read_bytes() for p in read)
    if reused(run, run / "shards" / "manifest.json", made_from):
        return run / "shards"
    path = run.with_name(run.name + ".yaml")
    path.write_text(text)
    cmd = [sys.executable, "-m", "refinery.pipeline.cli", "run", str(path), "--out", str(run)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return run / "shards"


def manifest_tokens(shards: Path) -> int:
    return int(json.loads((shards / "manifest.json").read_text())["tokens"])


def stage_funnel(run: Path) -> list[tuple[str, int, int, int, int, str]]:
    """(stage, documents in, kept, bytes in, bytes kept, main drop reasons) per stage, in order."""
    job = yaml.safe_load((run / "job.yaml").read_text())
    names = ["read"] + [s.get("name", s["stage"]) for s in job["stages"]]
    rows = []
    for name in names:
        s = json.loads((run / "stats" / f"{name}.json").read_text())
        reasons = sorted(s["dropped_by_reason"].items(), key=lambda kv: -kv[1])[:4]
        why = ", ".join(f"{reason} {n:,}" for reason, n in reasons)
        rows.append((name, s["docs_in"], s["docs_kept"], s["bytes_in"], s["bytes_kept"], why))
    return rows


def kept_by_source(run: Path, rows: list[dict]) -> dict[str, list[int]]:
    """Per part of the raw corpus, [documents kept, tokens kept] in the refined run."""
    source = {row["id"]: row["source"] for row in rows}
    kept: dict[str, list[int]] = {}
    for part in sorted((run / "docs").glob("*.parquet")):
        for doc in pq.read_table(part, columns=["id", "n_tokens"]).to_pylist():
            counts = kept.setdefault(source[doc["id"]], [0, 0])
            counts[0] += 1
            counts[1] += doc["n_tokens"]
    return kept


# ---------------------------------------------------------------- training and scoring


def train_config(seed: int) -> dict:
    return {
        "model": {"preset": "tiny", "overrides": {"vocab_size": "auto"}},
        "data": {"seq_len": SEQ_LEN, "seed": seed, "shuffle": True, "document_masking": False},
        "optim": {"lr": 3.0e-3, "warmup_steps": 5, "min_lr_ratio": 0.1, "clip_grad": 1.0},
        "checkpoint": {"every": 100_000, "keep": 1, "asynchronous": False},
        "micro_batch_size": BATCH,
        "global_batch_size": BATCH,
        "seed": seed,
        "device": "cpu",
        "tensorboard": False,
        "log_every": 10,
    }


def train(shards: Path, out: Path, seed: int, steps: int) -> Path:
    """One `refinery train` run (a finished run of the same shards and settings is reused,
    an unfinished one started again); returns its exported model folder."""
    text = yaml.safe_dump(train_config(seed), sort_keys=False)
    if reused(out, out / "hf", f"{text}{steps}".encode() + (shards / "manifest.json").read_bytes()):
        return out / "hf"
    out.mkdir(parents=True)
    conf = out.with_name(out.name + ".yaml")
    conf.write_text(text)
    cmd = [sys.executable, "-m", "refinery.pipeline.cli", "train", str(conf), "--data", str(shards)]
    with open(out.with_name(out.name + ".log"), "w") as log:
        subprocess.run(cmd + ["--out", str(out), "--max-steps", str(steps)], check=True, stdout=log, stderr=log)
    return out / "hf"


@torch.no_grad()
def held_out_loss(model_dir: Path, shards: Path) -> float:
    """Mean token cross-entropy over every full window of the held-out shards."""
    model = load_hf(model_dir).eval()
    dataset = TokenDataset(str(shards), SEQ_LEN, seed=0, shuffle=False, document_masking=False)
    total, count = 0.0, 0
    for batch in TokenLoader(dataset, 16):
        n = int((batch["labels"] != -100).sum())
        total += float(model(batch["input_ids"], labels=batch["labels"])) * n
        count += n
    return total / count


# ---------------------------------------------------------------- report


def mib(n: int) -> str:
    return f"{n / 2**20:.1f}"


def print_corpus(sizes: dict[str, list[int]], kept: dict[str, list[int]], raw_tokens: int, refined_tokens: int) -> None:
    print("| part of the raw corpus | documents | MiB | refined: documents kept | refined: tokens kept |")
    print("|---|---:|---:|---:|---:|")
    for name, (docs, chars) in sizes.items():
        docs_kept, tokens_kept = kept.get(name, [0, 0])
        print(f"| {name} | {docs:,} | {mib(chars)} | {docs_kept:,} | {tokens_kept:,} |")
    total_docs, total_chars = (sum(v[i] for v in sizes.values()) for i in (0, 1))
    print(
        f"| total | {total_docs:,} | {mib(total_chars)} | {sum(v[0] for v in kept.values()):,} | {refined_tokens:,} |"
    )
    print(f"tokens: raw {raw_tokens:,}, refined {refined_tokens:,} ({refined_tokens / raw_tokens:.1%})\n")


def print_funnel(run: Path) -> None:
    print("| stage | documents in | kept | MiB in | MiB kept | main drop reasons |")
    print("|---|---:|---:|---:|---:|---|")
    for name, docs_in, kept, bytes_in, bytes_kept, why in stage_funnel(run):
        print(f"| {name} | {docs_in:,} | {kept:,} | {mib(bytes_in)} | {mib(bytes_kept)} | {why} |")
    print()


def print_losses(losses: dict[str, dict[str, list[float]]], seeds: int) -> None:
    """Per held-out set and seed, raw vs refined; the mean and spread (max - min) over seeds; and
    whether refined beats raw by more than the spread of either."""
    for name, arms in losses.items():
        raw, ref = arms["raw"], arms["refined"]
        print(f"held-out {name}: mean token cross-entropy (nats)")
        print("| seed | raw | refined | refined - raw |")
        print("|---:|---:|---:|---:|")
        for s in range(seeds):
            print(f"| {s} | {raw[s]:.4f} | {ref[s]:.4f} | {ref[s] - raw[s]:+.4f} |")
        spread = max(max(raw) - min(raw), max(ref) - min(ref))
        gain = statistics.mean(raw) - statistics.mean(ref)
        print(
            f"| mean ± half-range | {statistics.mean(raw):.4f} ± {(max(raw) - min(raw)) / 2:.4f} | "
            f"{statistics.mean(ref):.4f} ± {(max(ref) - min(ref)) / 2:.4f} | {-gain:+.4f} |"
        )
        verdict = "yes" if gain > spread else "no"
        print(f"refined beats raw by more than the seed-to-seed spread ({spread:.4f}): {verdict} ({gain:+.4f})\n")


# ---------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="the shared data folder")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "ablation", help="work folder (reused by a rerun)")
    ap.add_argument("--tokens", type=int, default=655_360, help="training tokens per run")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--min-corpus-tokens", type=int, default=20_000_000)
    args = ap.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    rows, sizes = build_corpus(args.data, fetch_wheels(out / "wheels"))
    (out / "corpus.json").write_text(json.dumps(sizes, indent=1))
    write_jsonl(rows, out / "corpus", CORPUS_FILES)
    raw = run_job(out / "corpus", [tokenize_stage()], out / "raw-run", args.workers)
    raw_tokens = manifest_tokens(raw)
    if raw_tokens < args.min_corpus_tokens:
        raise SystemExit(f"the raw corpus has {raw_tokens:,} tokens, fewer than --min-corpus-tokens")
    refined = run_job(out / "corpus", refined_stages(), out / "refined-run", args.workers)
    evals = {}
    for i, (name, docs) in enumerate(held_out(args.data).items()):
        write_jsonl(docs, out / f"heldout-{i}", 1)
        evals[name] = run_job(out / f"heldout-{i}", [tokenize_stage()], out / f"heldout-{i}-run", 1)
    steps = args.tokens // (SEQ_LEN * BATCH)
    losses: dict[str, dict[str, list[float]]] = {name: {"raw": [], "refined": []} for name in evals}
    for seed in range(args.seeds):
        for arm, shards in (("raw", raw), ("refined", refined)):
            model = train(shards, out / "train" / f"{arm}-{steps}steps-seed{seed}", seed, steps)
            for name, held in evals.items():
                losses[name][arm].append(held_out_loss(model, held))
            print(f"trained {arm} seed {seed}", {n: round(v[arm][-1], 4) for n, v in losses.items()}, flush=True)
    (out / f"losses-{steps}steps.json").write_text(json.dumps(losses, indent=1))
    tokens, refined_tokens = steps * BATCH * SEQ_LEN, manifest_tokens(refined)
    print(
        f"\n{steps} steps x {BATCH} x {SEQ_LEN} = {tokens:,} training tokens per run: {tokens / raw_tokens:.2f} "
        f"passes over the raw tokens, {tokens / refined_tokens:.2f} over the refined\n"
    )
    print_corpus(sizes, kept_by_source(out / "refined-run", rows), raw_tokens, refined_tokens)
    print_funnel(out / "refined-run")
    print("held-out tokens:", {name: manifest_tokens(p) for name, p in evals.items()}, "\n")
    print_losses(losses, args.seeds)


if __name__ == "__main__":
    main()
