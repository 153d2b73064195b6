"""The whole pipeline, WARC to token files: `refinery run` against datatrove's equivalent.

    python bench/pipeline.py [--pages 5000] [--workers 2] [--work DIR] [--data ../shared/data]

Why: the other benchmarks time one stage each; this one times what a user runs, on real pages.
Input: the real HTML pages of the data folder (trafilatura's evaluation pages and the
article-extraction benchmark's, 724 in all), repeated until there are `--pages` of them, each
repeat under its own URL, written as gzip WARC response records into 8 files (cached in the
work folder). Both sides run the same stages with the same settings and `--workers` processes:

  1. WARC reading: refinery's FastWARC reader; datatrove's `WarcReader` (warcio).
  2. trafilatura 2.3.1, favour precision, no comments, 10 s per page, each page in a child
     process that is restarted after a timeout (both).
  3. fastText language ID with the same `models/lid.176.ftz`, English with score >= 0.65.
  4. Gopher repetition, Gopher quality, C4 quality and FineWeb quality, default thresholds.
  5. MinHash dedup: 5-word shingles, Jaccard 0.7 banding in 14 bands x 9 rows.
  6. SentencePiece tokenization with `models/tokenizer/refinery-demo-8k.model`, BOS and EOS
     added; datatrove's `DocumentTokenizer` gets it converted to a `tokenizer.json` once, and
     the script prints how many of refinery's tokenized documents the two encode alike.

What differs: datatrove's `WarcReader` skips a page that is neither UTF-8 nor decodable as
cchardet guesses (2 of the 724 pages); refinery decodes it. datatrove's filters stop at a
document's first failing filter, ours judge every family on every document; both rewrite a page
to C4's kept lines (refinery: `c4_quality.remove_lines`). refinery's language ID reads a page's
first 100,000 characters, datatrove's the whole text. MinHash: ours 128 permutations of 32-bit
shingle hashes (126 used by the bands); datatrove's 126 64-bit xxhash values over normalized
spaCy words. datatrove's trafilatura runs with `deduplicate=False` (its default would strip
paragraphs it saw on earlier pages, and refinery has no such cache), its tokenizer without
shuffling. Writing: refinery writes Parquet (zstd) between the dedup phases and at the end,
and token shards; datatrove writes Parquet (zstd) after the filters and at the end, and its
token files. datatrove's four MinHash steps run one after another as separate executors, as
its pipeline is built.

Needs datatrove 0.10.1 with spaCy, and for its `WarcReader` warcio, faust-cchardet and
python-magic. Each side runs in its own process group and is timed from outside: wall time and
the CPU time (user + system) of its whole process tree; this process is the subreaper of its
descendants, so orphaned children are reaped here and counted. docs/s per core = input pages /
CPU seconds; docs/s per worker = input pages / wall seconds / workers. Per-stage seconds are
each pipeline's own timers, summed over workers (the notes under the table say how).
"""

from __future__ import annotations

import argparse
import atexit
import ctypes
import gzip
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parents[1]
LID_MODEL = ROOT / "models" / "lid.176.ftz"
SPM_MODEL = ROOT / "models" / "tokenizer" / "refinery-demo-8k.model"
FILES = 8
NGRAM, BANDS, ROWS = 5, 14, 9
TIMEOUT_S = 10
PR_SET_CHILD_SUBREAPER = 36
GROUPS: set[int] = set()  # process groups of the running sides, killed on exit


# ---------------------------------------------------------------- input


def real_pages(data: Path) -> list[tuple[str, bytes]]:
    """(URL, raw HTML) of the real pages of the data folder, in a fixed order."""
    evaldata = json.loads((data / "trafilatura_eval" / "evaldata.json").read_text())
    urls = {entry["file"]: url for url, entry in evaldata.items()}
    gold = json.loads((data / "article_extraction_benchmark" / "ground-truth.json").read_text())
    pages = []
    for path in sorted((data / "trafilatura_eval" / "html").glob("*.html.gz")):
        url = urls[path.name.removesuffix(".gz")]
        pages.append(
            (
                url if url.startswith("http") else f"https://pages.invalid/{path.stem}",
                gzip.decompress(path.read_bytes()),
            )
        )
    for path in sorted((data / "article_extraction_benchmark" / "html").glob("*.html.gz")):
        pages.append((gold[path.name.split(".")[0]]["url"], gzip.decompress(path.read_bytes())))
    return pages


def warc_record(url: str, body: bytes) -> bytes:
    """One gzip member holding one WARC response record of an HTTP 200 text/html page."""
    http = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    head = (
        "WARC/1.0\r\nWARC-Type: response\r\n"
        f"WARC-Record-ID: <urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, url)}>\r\n"
        f"WARC-Date: 2024-01-01T00:00:00Z\r\nWARC-Target-URI: {url}\r\n"
        "WARC-Identified-Payload-Type: text/html\r\nContent-Type: application/http; msgtype=response\r\n"
        f"Content-Length: {len(http)}\r\n\r\n"
    )
    return gzip.compress(head.encode() + http + b"\r\n\r\n", compresslevel=6)


def build_input(data: Path, n: int, folder: Path) -> Path:
    """`n` records in FILES gzip WARC files under `folder` (kept and reused when complete)."""
    if len(list(folder.glob("*.warc.gz"))) == FILES:
        return folder
    pages = real_pages(data)
    order = []
    for copy in range(-(-n // len(pages))):
        round_ = [(f"{url}{'&' if '?' in url else '?'}copy={copy}", body) for url, body in pages]
        random.Random(copy).shuffle(round_)
        order += round_
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for f in range(FILES):
        with open(partial / f"pages-{f:02d}.warc.gz", "wb") as out:
            for url, body in order[f:n:FILES]:
                out.write(warc_record(url, body))
    partial.rename(folder)
    return folder


# ---------------------------------------------------------------- tokenizer


def hf_tokenizer(model: Path, out: Path) -> Path:
    """The SentencePiece BPE model as a `tokenizers` tokenizer.json: its vocabulary and merges,
    spaces as '▁' with no dummy prefix (identity normalization), pieces split where
    SentencePiece splits them (a run of '▁' starts a piece), byte fallback, and BOS + text + EOS."""
    import sentencepiece as spm
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers.convert_slow_tokenizer import SentencePieceExtractor

    sp = spm.SentencePieceProcessor(model_file=str(model))
    spec = SentencePieceExtractor(str(model)).extract(None)
    tok = Tokenizer(
        models.BPE(
            vocab=spec["vocab"],
            merges=spec["merges"],
            unk_token=sp.id_to_piece(sp.unk_id()),
            byte_fallback=True,
            fuse_unk=True,
        )
    )
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("▁+[^▁]*|[^▁]+"), behavior="isolated")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.add_special_tokens(spec["additional_special_tokens"])
    bos, eos = sp.id_to_piece(sp.bos_id()), sp.id_to_piece(sp.eos_id())
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", special_tokens=[(bos, sp.bos_id()), (eos, sp.eos_id())]
    )
    tok.save(str(out))
    return out


def token_agreement(run: Path, tokenizer_json: Path, limit: int = 200) -> tuple[int, int]:
    """(documents encoded alike, documents compared): refinery's `input_ids` of its first kept
    documents against the converted tokenizer's ids for the same texts."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    rows = []
    for part in sorted((run / "docs").glob("*.parquet")):
        rows += pq.read_table(part, columns=["text", "input_ids"]).to_pylist()
        if len(rows) >= limit:
            break
    rows = rows[:limit]
    same = sum(enc.ids == row["input_ids"] for enc, row in zip(tok.encode_batch([r["text"] for r in rows]), rows))
    return same, len(rows)


# ---------------------------------------------------------------- measuring a process tree


def become_subreaper() -> None:
    """Orphaned descendants are re-parented to this process, so their CPU time reaches our
    RUSAGE_CHILDREN when they are reaped (Linux)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def kill_groups() -> None:
    for group in list(GROUPS):
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
        GROUPS.discard(group)


def reap_all(within_s: float) -> None:
    """Reap every remaining descendant (orphans included) that ends within `within_s`, so that
    its CPU time is counted."""
    end = time.monotonic() + within_s
    while time.monotonic() < end:
        try:
            if os.waitpid(-1, os.WNOHANG) == (0, 0):
                time.sleep(0.05)
        except ChildProcessError:
            return


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measured(cmd: list[str], log: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the whole process tree) of one command, in its own group."""
    cpu = children_cpu()
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        GROUPS.add(proc.pid)
        code = proc.wait()
    wall = time.perf_counter() - start
    reap_all(10.0)  # leftovers (idle extraction children) end once their parent is gone
    kill_groups()
    reap_all(10.0)
    if code:
        raise SystemExit(f"{' '.join(cmd)} failed ({code}); see {log}")
    return wall, children_cpu() - cpu


# ---------------------------------------------------------------- refinery


def refinery_job(inputs: Path, workers: int) -> Path:
    job = {
        "input": {"paths": [f"{inputs.name}/*.warc.gz"], "format": "warc"},
        "stages": [
            {"stage": "extract", "favor_precision": True, "timeout_s": TIMEOUT_S},
            {"stage": "langid", "languages": ["en"], "threshold": 0.65},
            {
                "stage": "rules",
                "c4_badwords": None,
                "internlm2": None,
                "c4_paragraph": None,
                "c4_quality": {"remove_lines": True},
            },
            {"stage": "dedup", "method": "minhash", "ngram": NGRAM, "num_perm": 128, "threshold": 0.7},
            {"stage": "tokenize", "tokenizer": str(SPM_MODEL)},
        ],
        "runner": "local",
        "workers": workers,
    }
    path = inputs.parent / "refinery.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


def refinery_stages(run: Path) -> dict[str, tuple[float | None, int, int]]:
    """Stage -> (seconds summed over workers, documents in, kept), from RUN/stats; reading is
    not timed there (None). The dedup stage's statistics time its filter phase; its signatures
    and resolve are added as the wall time from the last first-segment marker to its resolved
    marker."""
    stages = {}
    for name in ("read", "extract", "langid", "rules", "dedup", "tokenize"):
        s = json.loads((run / "stats" / f"{name}.json").read_text())
        stages[name] = (s["seconds"] or None, s["docs_in"], s["docs_kept"])
    done = run / "_done"
    first = max(p.stat().st_mtime for p in done.glob("s0-*"))
    seconds, docs_in, kept = stages["dedup"]
    stages["dedup"] = (seconds + (done / "dedup.resolved").stat().st_mtime - first, docs_in, kept)
    return stages


def refinery_tokens(run: Path) -> int:
    return sum(
        pq.read_table(p, columns=["n_tokens"]).column(0).to_numpy().sum() for p in (run / "docs").glob("*.parquet")
    )


# ---------------------------------------------------------------- datatrove


def datatrove_steps(inputs: Path, out: Path, tokenizer_json: Path) -> list[tuple[str, list, int]]:
    """(name, pipeline, tasks) of the executors to run one after another."""
    from datatrove.pipeline.dedup import (
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )
    from datatrove.pipeline.readers import ParquetReader, WarcReader
    from datatrove.pipeline.tokens import DocumentTokenizer
    from datatrove.pipeline.writers import ParquetWriter
    from datatrove_compat import minhash_signature

    config = MinhashConfig(n_grams=NGRAM, num_buckets=BANDS, hashes_per_bucket=ROWS)
    sigs, buckets, remove = str(out / "signatures"), str(out / "buckets"), str(out / "remove_ids")
    return [
        (
            "filter",
            [
                WarcReader(str(inputs)),
                Trafilatura(favour_precision=True, timeout=TIMEOUT_S, deduplicate=False),
                local_language_filter(),
                GopherRepetitionFilter(),
                GopherQualityFilter(),
                C4QualityFilter(),
                FineWebQualityFilter(),
                ParquetWriter(str(out / "filtered"), compression="zstd"),
                minhash_signature(MinhashDedupSignature(output_folder=sigs, config=config)),
            ],
            FILES,
        ),
        ("minhash buckets", [MinhashDedupBuckets(input_folder=sigs, output_folder=buckets, config=config)], BANDS),
        ("minhash cluster", [MinhashDedupCluster(input_folder=buckets, output_folder=remove, config=config)], 1),
        (
            "dedup and tokenize",
            [
                ParquetReader(str(out / "filtered")),
                MinhashDedupFilter(input_folder=remove),
                ParquetWriter(str(out / "docs"), compression="zstd"),
                DocumentTokenizer(
                    str(out / "tokens"), tokenizer_name_or_path=str(tokenizer_json), shuffle_documents=False
                ),
            ],
            FILES,
        ),
    ]


def local_language_filter():
    """datatrove's `LanguageFilter` (ft176 backend) loading our lid.176.ftz, not downloading its own."""
    from datatrove.pipeline.filters import LanguageFilter
    from datatrove.utils.lid import FT176LID

    class LocalFT176(FT176LID):
        @property
        def model(self):
            if self._model is None:
                from fasttext.FastText import _FastText

                self._model = _FastText(str(LID_MODEL))
            return self._model

    step = LanguageFilter(languages=["en"], language_threshold=0.65)
    step.model = LocalFT176(["en"])
    return step


def datatrove_child(inputs: Path, out: Path, tokenizer_json: Path, workers: int) -> None:
    from datatrove.executor import LocalPipelineExecutor

    walls = {}
    for i, (name, pipeline, tasks) in enumerate(datatrove_steps(inputs, out, tokenizer_json)):
        start = time.perf_counter()
        LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=workers, logging_dir=str(out / f"logs-{i}")).run()
        walls[name] = time.perf_counter() - start
    (out / "walls.json").write_text(json.dumps(walls))


def datatrove_tokens(out: Path) -> int:
    return json.loads((out / "logs-3" / "stats.json").read_text())[3]["stats"]["tokens"]["total"]


def datatrove_stages(out: Path) -> dict[str, tuple[float, int, int]]:
    """Stage -> (seconds summed over tasks, documents in, kept), from each executor's stats.json
    (its steps' own timers, in pipeline order). The signature step's timer also runs while the
    steps before it work, so theirs are subtracted; the bucket and cluster executors count by
    their wall time."""
    first, last = (json.loads((out / f"logs-{i}" / "stats.json").read_text()) for i in (0, 3))
    walls = json.loads((out / "walls.json").read_text())

    def seconds(steps: list[dict]) -> float:
        return sum(s["time_stats"]["total"] if isinstance(s["time_stats"], dict) else 0.0 for s in steps)

    def row(steps: list[dict], extra: float = 0.0) -> tuple[float, int, int]:
        return seconds(steps) + extra, steps[0]["stats"].get("total", 0), steps[-1]["stats"].get("forwarded", 0)

    def passed(steps: list[dict], docs: int) -> tuple[float, int, int]:
        return seconds(steps), docs, docs

    signatures = seconds(first[8:9]) - seconds(first[0:8])
    return {
        "read": passed(first[0:1], first[0]["stats"]["documents"]["total"]),
        "extract": row(first[1:2]),
        "langid": row(first[2:3]),
        "rules": row(first[3:7]),
        "dedup": row(last[1:2], signatures + walls["minhash buckets"] + walls["minhash cluster"]),
        "tokenize": passed(last[3:4], last[3]["stats"]["tokens"]["n"]),
        "write Parquet": passed([first[7], last[2]], first[7]["stats"]["total"] + last[2]["stats"]["total"]),
    }


# ---------------------------------------------------------------- running and reporting


def run_refinery(inputs: Path, workers: int, work: Path) -> tuple[float, float, dict, int]:
    run = work / "refinery-run"
    shutil.rmtree(run, ignore_errors=True)
    job = refinery_job(inputs, workers)
    cmd = [sys.executable, "-m", "refinery.pipeline.cli", "run", str(job), "--out", str(run), "--runner", "local"]
    wall, cpu = measured(cmd, work / "refinery.log")
    return wall, cpu, refinery_stages(run), refinery_tokens(run)


def run_datatrove(pages: int, workers: int, work: Path) -> tuple[float, float, dict, int]:
    out = work / "datatrove-run"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [
        sys.executable,
        __file__,
        "--datatrove-child",
        "--pages",
        str(pages),
        "--workers",
        str(workers),
        "--work",
        str(work),
    ]
    wall, cpu = measured(cmd, work / "datatrove.log")
    return wall, cpu, datatrove_stages(out), datatrove_tokens(out)


def report(pages: int, workers: int, results: dict[str, tuple[float, float, dict, int]]) -> None:
    print("| system | wall s | CPU s | docs/s per core | docs/s per worker | documents tokenized | tokens |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, (wall, cpu, stages, tokens) in results.items():
        print(
            f"| {name} | {wall:.1f} | {cpu:.1f} | {pages / cpu:.2f} | {pages / wall / workers:.2f} | "
            f"{stages['tokenize'][2]:,} | {tokens:,} |"
        )
    (rw, rc, ours, _), (dw, dc, peer, _) = results.values()
    print(f"refinery / datatrove: {dc / rc:.2f}x per core (CPU), {dw / rw:.2f}x per worker (wall)\n")
    print("| stage | refinery s | share | in -> kept | datatrove s | share | in -> kept |")
    print("|---|---:|---:|---:|---:|---:|---:|")

    def cells(row: tuple | None, cpu: float) -> str:
        if row is None:
            return "— | |"
        seconds, docs_in, kept = row
        timed = "— |" if seconds is None else f"{seconds:.1f} | {100 * seconds / cpu:.0f}%"
        return f"{timed} | {docs_in:,} -> {kept:,}"

    for stage in peer:
        print(f"| {stage} | {cells(ours.get(stage), rc)} | {cells(peer[stage], dc)} |")
    rest = [cpu - sum(s[0] or 0.0 for s in stages.values()) for _, cpu, stages, _ in results.values()]
    print(
        f"| rest of the CPU time | {rest[0]:.1f} | {100 * rest[0] / rc:.0f}% | | {rest[1]:.1f} | "
        f"{100 * rest[1] / dc:.0f}% | |"
    )
    print(
        "Stage seconds are each pipeline's own timers summed over workers; share = of that side's CPU s.\n"
        "refinery: reading and writing are not timed by its statistics (they are in the rest); dedup = its\n"
        "filter phase + the wall time of signatures and resolve between its segments.\n"
        "datatrove: dedup = signature step (less the steps before it, which its timer includes) + the\n"
        "bucket and cluster executors' wall time + the filter step; read = WarcReader's record decoding."
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pages", type=int, default=5000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--work", type=Path, help="work folder (default: a new temporary one); the input WARC is cached there"
    )
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="the shared data folder")
    ap.add_argument("--datatrove-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    work = (args.work or Path(tempfile.mkdtemp(prefix="pipeline-bench-"))).resolve()
    inputs, tokenizer_json = work / f"input-{args.pages}", work / "tokenizer.json"
    if args.datatrove_child:
        datatrove_child(inputs, work / "datatrove-run", tokenizer_json, args.workers)
        return
    become_subreaper()
    atexit.register(kill_groups)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work.mkdir(parents=True, exist_ok=True)
    build_input(args.data, args.pages, inputs)
    hf_tokenizer(SPM_MODEL, tokenizer_json)
    mb = sum(p.stat().st_size for p in inputs.glob("*.warc.gz")) / 1e6
    print(
        f"{args.pages:,} WARC records ({mb:.0f} MB gzip, {FILES} files) in {work}; {args.workers} workers each side",
        flush=True,
    )
    results = {"refinery": run_refinery(inputs, args.workers, work)}
    same, compared = token_agreement(work / "refinery-run", tokenizer_json)
    print(
        f"token ids: {same} of {compared} refinery documents encoded alike by the converted tokenizer.json", flush=True
    )
    results["datatrove"] = run_datatrove(args.pages, args.workers, work)
    report(args.pages, args.workers, results)


if __name__ == "__main__":
    main()
