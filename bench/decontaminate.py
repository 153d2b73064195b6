"""Benchmark decontamination: refinery's `decontaminate` stage against datatrove's n-gram
decontamination (`NGramsDecontFilter`) on the same documents and the same benchmark items.

Benchmarks, benchmark-style rows built from real text that the documents do not contain:
`cloze` (US inaugural addresses: a sentence without its last word, four choices), `qa` (State of
the Union addresses: a sentence and the next one as its answer, Parquet), `reading` (Genesis, King
James: three verses as a passage, the next verse as the answer) and `multilingual` (Leipzig
sentences of de, fr, ru, zh and ja from lingua-py's test data). Documents: the 724 real pages of
tests/data/web/extracted.jsonl.gz, `--repeat` copies, then more clean text: lingua's sentences of
70 other languages, 20 per document, and the UDHR's 389 translations. Into `--planted` of the page
copies one item of a random suite is quoted, spelled in one of five ways: verbatim, upper case, broken over lines,
punctuation changed, or a 20-word excerpt of a longer string (question and answer joined for
`qa`). Recall: planted documents dropped. Clean documents dropped: the unplanted copies that are
dropped, each checked against the benchmark strings by plain string n-grams (a confirmed drop is a
true quote, not a false positive).

datatrove's index is built with its indexer's own `compute_hashes` (its constructor requires
lighteval, which loads tasks from the Hugging Face hub) over the same strings refinery indexes, and
written in its file format; its filter then runs as it ships: spaCy English word tokens, its text
normalization, 64-bit xxhash, 13-grams. Both index and filter on one core; the figures are the
filter phase.

    python bench/decontaminate.py [--repeat 4] [--planted 1000]
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"

from refinery.pipeline.rundir import RunDir  # noqa: E402
from refinery.pipeline.stage import run_map_stage  # noqa: E402
from refinery.stages.decontaminate import Decontaminate, DecontaminateParams, benchmark_rows, row_strings  # noqa: E402
from refinery.stages.dedup.text import normalize_words  # noqa: E402

NGRAM = 13
MULTILINGUAL = ("de", "fr", "ru", "zh", "ja")
SPELLINGS = ("verbatim", "upper", "lines", "punctuation", "excerpt")


def normalized(texts: list[str]) -> list[list[str]]:
    """The normalized words of each text (the stage's normalization, one Arrow call for all)."""
    return [t.split() for t in normalize_words(pa.array(texts, pa.large_string())).to_pylist()]


def ngrams(tokens: list[str]) -> set[str]:
    return {" ".join(tokens[i : i + NGRAM]) for i in range(len(tokens) - NGRAM + 1)}


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split())) if s.strip()]


def _zip_texts(name: str, member: str = "") -> list[str]:
    with zipfile.ZipFile(SHARED / "nltk_corpora" / f"{name}.zip") as z:
        return [z.read(n).decode("latin-1") for n in sorted(z.namelist()) if n.endswith(".txt") and member in n]


def suites(folder: Path, rng: random.Random) -> dict[str, Path]:
    """The four benchmark files, written into `folder`."""
    long = [s for t in _zip_texts("inaugural") for s in _sentences(t) if len(s.split()) >= 16]
    vocab = sorted({w for s in long for w in s.split() if w.isalpha()})
    cloze = []
    for s in rng.sample(long, 600):
        *context, last = s.split()
        choices = [last, *rng.sample(vocab, 3)]
        rng.shuffle(choices)
        cloze.append({"context": " ".join(context), "choices": choices, "answer": choices.index(last)})
    union = [_sentences(t) for t in _zip_texts("state_union")]
    pairs = [(a, b) for ss in union for a, b in zip(ss, ss[1:]) if len(a.split()) >= 14 and len(b.split()) >= 14]
    qa = [{"question": a, "answer": b} for a, b in rng.sample(pairs, 600)]
    verses = [v for v in _zip_texts("genesis", "english-kjv")[0].splitlines() if v.strip()]
    reading = [
        {"passage": " ".join(verses[i : i + 3]), "question": "What happens next?", "answer": verses[i + 3]}
        for i in rng.sample(range(len(verses) - 3), 600)
    ]
    multilingual = []
    for lang in MULTILINGUAL:
        with gzip.open(SHARED / "lingua_langid_testdata" / "sentences" / f"{lang}.txt.gz", "rt") as fh:
            lines = [s.strip() for s in fh]
            found = [s for s, tokens in zip(lines, normalized(lines)) if len(tokens) >= 20]
        multilingual += [{"sentence": s, "language": lang} for s in rng.sample(found, min(120, len(found)))]
    out = {name: folder / f"{name}.jsonl" for name in ("cloze", "reading", "multilingual")}
    for name, rows in (("cloze", cloze), ("reading", reading), ("multilingual", multilingual)):
        out[name].write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    out["qa"] = folder / "qa.parquet"
    pq.write_table(pa.Table.from_pylist(qa), out["qa"])
    return out


def quote(row: dict, spelling: str, rng: random.Random) -> str:
    """A quote of a benchmark row as a web page would carry it."""
    text = max(row_strings(row), key=len)
    if spelling == "upper":
        return text.upper()
    if spelling == "lines":
        tokens = text.split()
        return "\n".join(" ".join(tokens[i : i + 5]) for i in range(0, len(tokens), 5))
    if spelling == "punctuation":
        return re.sub(r"[,;:]", "", text).replace(" ", " - ", 2).replace("'", "’")
    if spelling == "excerpt":
        tokens = " ".join(row_strings(row)).split()
        start = rng.randrange(max(1, len(tokens) - 20))
        return " ".join(tokens[start : start + 20])
    return text


def clean_texts() -> list[str]:
    """More text no benchmark quotes, for the rate of clean documents dropped: lingua's sentences
    of the 70 languages the multilingual suite does not use (20 per document), and the 389
    translations of the UDHR."""
    texts = []
    for path in sorted((SHARED / "lingua_langid_testdata" / "sentences").glob("*.txt.gz")):
        if path.name.split(".")[0] not in MULTILINGUAL:
            with gzip.open(path, "rt") as fh:
                lines = [s.strip() for s in fh]
            texts += [" ".join(lines[i : i + 20]) for i in range(0, len(lines), 20)]
    with zipfile.ZipFile(SHARED / "nltk_corpora" / "udhr2.zip") as z:
        texts += [z.read(n).decode("utf-8", "replace") for n in sorted(z.namelist()) if n.endswith(".txt")]
    return texts


def documents(files: dict[str, Path], repeat: int, planted: int, rng: random.Random):
    """Texts, and per text the (suite, spelling) planted in it or None: the web pages, some of
    them with a planted quote, then `clean_texts()`."""
    with gzip.open(ROOT / "tests/data/web/extracted.jsonl.gz", "rt") as fh:
        pages = [json.loads(line)["text"] for line in fh]
    texts = [p for _ in range(repeat) for p in pages]
    labels: list[tuple[str, str] | None] = [None] * len(texts)
    rows = {name: benchmark_rows(str(path)) for name, path in files.items()}
    for k, doc in enumerate(rng.sample(range(len(texts)), planted)):
        suite = rng.choice(sorted(rows))
        spelling = SPELLINGS[k % len(SPELLINGS)]
        row = rng.choice(rows[suite])
        item = quote(row, spelling, rng)
        paragraphs = texts[doc].split("\n")
        paragraphs.insert(rng.randint(0, len(paragraphs)), item)
        texts[doc] = "\n".join(paragraphs)
        labels[doc] = (f"{suite}:{row['language']}" if "language" in row else suite, spelling)
    extra = clean_texts()
    return texts + extra, labels + [None] * len(extra)


def ours(files: dict[str, Path], texts: list[str], folder: Path) -> tuple[np.ndarray, float, float]:
    params = DecontaminateParams(benchmarks=[str(p) for p in files.values()], ngram=NGRAM)
    stage = Decontaminate(params, annotate_only=True)
    start = time.process_time()
    stage.prepare(RunDir(folder / "run"))
    stage.setup()
    indexed = time.process_time() - start
    dropped = []
    start = time.process_time()
    for lo in range(0, len(texts), 2000):
        chunk = texts[lo : lo + 2000]
        batch = pa.RecordBatch.from_pydict(
            {
                "id": [str(i) for i in range(len(chunk))],
                "text": pa.array(chunk, pa.large_string()),
                "url": [None] * len(chunk),
            }
        )
        out, _ = run_map_stage(stage, batch)
        dropped.append(np.asarray(out.column("decontaminate_reason").is_valid()))
    return np.concatenate(dropped), indexed, time.process_time() - start


def datatrove(files: dict[str, Path], texts: list[str], folder: Path) -> tuple[np.ndarray, float, float]:
    from datatrove.data import Document
    from datatrove.pipeline.decont import NGramsDecontConfig, NGramsDecontFilter, NGramsDecontIndexer
    from datatrove.utils.hashing import create_hash_func
    from datatrove.utils.word_tokenizers import load_word_tokenizer

    config = NGramsDecontConfig(n_grams=NGRAM, find_query_ngrams=True)
    start = time.process_time()
    indexer = object.__new__(NGramsDecontIndexer)  # its __init__ insists on lighteval
    indexer.config, indexer.tokenizer = config, load_word_tokenizer("en")
    # Its default hash, xxhash64, is handed str n-grams, which xxhash 4 refuses: encode them first.
    xxh64 = create_hash_func(config.hash_config)
    indexer.hash_func = lambda text: xxh64(text.encode())
    index = folder / "datatrove-index"
    index.mkdir()
    for name, path in files.items():
        hashes = set()
        for row in benchmark_rows(str(path)):
            strings = [s for s in row_strings(row) if s.strip()]
            for text in strings + ([" ".join(strings)] if len(strings) > 1 else []):
                hashes.update(indexer.compute_hashes(text))
        np.array(sorted(hashes), dtype=config.hash_config.np_descr).tofile(index / f"{name}.index.hashes")
    filt = NGramsDecontFilter(str(index), config=config)
    filt.hash_func = indexer.hash_func
    filt.load_index_hashes()
    indexed = time.process_time() - start
    start = time.process_time()
    verdicts = [filt.filter(Document(text=t, id=str(i))) for i, t in enumerate(texts)]  # True, or (False, reason)
    dropped = np.array([verdict is not True for verdict in verdicts])
    return dropped, indexed, time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--planted", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = suites(folder, rng)
        texts, labels = documents(files, args.repeat, args.planted, rng)
        mb = sum(len(t.encode()) for t in texts) / 1e6
        print(
            f"{len(texts)} documents ({mb:.1f} MB), {args.planted} planted; benchmarks: "
            + ", ".join(f"{n} {len(benchmark_rows(str(p)))} rows" for n, p in files.items())
        )
        strings = [t for p in files.values() for row in benchmark_rows(str(p)) for t in row_strings(row)]
        quoted = set().union(*map(ngrams, normalized(strings)))
        planted = np.array([label is not None for label in labels])
        results = {}
        for name, fn in (("refinery", ours), ("datatrove", datatrove)):
            dropped, indexed, seconds = fn(files, texts, folder)
            clean = np.flatnonzero(dropped & ~planted)
            true = sum(not quoted.isdisjoint(ngrams(tokens)) for tokens in normalized([texts[i] for i in clean]))
            results[name] = seconds
            print(
                f"\n{name}: index {indexed:.2f} s, filter {seconds:.2f} s CPU = {len(texts) / seconds:,.0f} docs/s, "
                f"{mb / seconds:.2f} MB/s"
            )
            print(
                f"  recall {dropped[planted].mean():.3f}; clean documents dropped {len(clean)} of "
                f"{int((~planted).sum())} ({len(clean) / (~planted).sum():.3%}), {true} of them true quotes"
            )
            for key, values in (("suite", sorted({lab[0] for lab in labels if lab})), ("spelling", SPELLINGS)):
                column = 0 if key == "suite" else 1
                cells = []
                for value in values:
                    rows = [i for i, lab in enumerate(labels) if lab and lab[column] == value]
                    cells.append(f"{value} {dropped[rows].mean():.3f}")
                print(f"  recall by {key}: " + ", ".join(cells))
        print(f"\nfilter throughput, refinery / datatrove: {results['datatrove'] / results['refinery']:.1f}x")


if __name__ == "__main__":
    main()
