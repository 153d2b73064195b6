"""Bad inputs, bad configs and crash leftovers, as a careful user would meet them.

Every case is a real file made from the fixture data (inaugural paragraphs, news pages of the
sample WARC): damaged, mistyped or oversized on purpose. The same jobs run on the local runner,
on Spark, and on Ray (an embedded Ray in a child process with its own temp dir, whose processes
must all be gone when it exits); all must give the exact counts by reason below, keep every good
document, and balance every stage (in = kept + dropped + errored).
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import tempfile
import uuid
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from funnel_checks import check_invariants
from services import MARKER, _marked

from refinery.loaders import TokenDataset
from refinery.loaders.source import ShardCorrupt
from refinery.pipeline.cli import main as cli
from refinery.pipeline.config import ConfigError, load_job
from refinery.pipeline.funnel import load_stats
from refinery.pipeline.run import run
from refinery.tokenize.shards import MANIFEST

ROOT = Path(__file__).resolve().parent.parent
TOKENIZER = ROOT / "models" / "tokenizer" / "refinery-demo-8k.model"
STAGES = f"""
  - {{stage: normalize}}
  - {{stage: dedup, method: exact}}
  - {{stage: tokenize, tokenizer: {TOKENIZER}, block_tokens: 2000}}
"""
MAX_DOC_BYTES = 200_000


def paragraphs(n: int) -> list[str]:
    """Distinct real paragraphs of the inaugural addresses, long enough to keep."""
    texts = []
    for line in (ROOT / "tests" / "data" / "spine" / "inaugural-a.jsonl").read_text().splitlines():
        text = json.loads(line)["text"]
        if len(text) > 300 and text not in texts:
            texts.append(text)
    return texts[:n]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def warc_record(html: bytes, url: str, status: bytes = b"HTTP/1.1 200 OK") -> bytes:
    """One gzip member holding a WARC response record."""
    http = status + b"\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: %d\r\n\r\n" % len(html) + html
    head = (
        b"WARC/1.0\r\nWARC-Type: response\r\nWARC-Record-ID: <urn:uuid:%s>\r\nWARC-Target-URI: %s\r\n"
        b"Content-Type: application/http; msgtype=response\r\nContent-Length: %d\r\n\r\n"
        % (str(uuid.uuid5(uuid.NAMESPACE_URL, url)).encode(), url.encode(), len(http))
    )
    return gzip.compress(head + http + b"\r\n\r\n", mtime=0)


def sample_pages(n: int) -> list[bytes]:
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    pages = []
    with open(ROOT / "data" / "sample" / "articles.warc.gz", "rb") as fh:
        for record in ArchiveIterator(fh, record_types=WarcRecordType.response, parse_http=True):
            pages.append(record.reader.read())
            if len(pages) == n:
                break
    return pages


def complete_lines(gz: bytes) -> int:
    """Lines a truncated gzip stream holds in full (what a reader can still use)."""
    data = zlib.decompressobj(31).decompress(gz)
    return data.count(b"\n")


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict:
    """Input folders per format, and what reading them must give."""
    base = tmp_path_factory.mktemp("fuzz")
    texts = paragraphs(40)
    good = iter(texts)

    def docs(prefix: str, n: int) -> list[dict]:
        return [{"id": f"{prefix}{i}", "text": next(good)} for i in range(n)]

    jsonl = base / "jsonl"
    jsonl.mkdir()
    expect_jsonl = []
    rows = docs("good-", 5)
    write_jsonl(jsonl / "good.jsonl", rows)
    expect_jsonl += [r["id"] for r in rows]
    kept = docs("typed-", 2)
    write_jsonl(
        jsonl / "typed.jsonl",
        [{"id": "n1", "text": 17}, {"id": "n2", "text": ["a list"]}, {"id": "n3", "text": None}, *kept],
    )
    expect_jsonl += [r["id"] for r in kept]
    (jsonl / "not-gzip.jsonl.gz").write_text(json.dumps(next(good)) + "\n")
    rows = docs("cut-", 8)
    whole = gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode(), mtime=0)
    cut = whole[: len(whole) * 2 // 3]
    (jsonl / "cut.jsonl.gz").write_bytes(cut)
    expect_jsonl += [r["id"] for r in rows[: complete_lines(cut)]]
    rows = docs("beside-huge-", 1)
    huge = {"id": "huge", "text": (texts[-1] + "\n\n") * (MAX_DOC_BYTES // len(texts[-1]) + 10)}
    write_jsonl(jsonl / "huge.jsonl", [huge, *rows])
    expect_jsonl += [r["id"] for r in rows]
    (jsonl / "empty.jsonl").write_bytes(b"")
    bad_lines = ROOT / "tests" / "data" / "spine" / "bad-lines.jsonl"  # the bad lines that were always caught
    (jsonl / "bad-lines.jsonl").write_bytes(bad_lines.read_bytes())
    expect_jsonl += [
        json.loads(line)["id"]
        for line in bad_lines.read_text(errors="replace").splitlines()
        if line.startswith('{"id"') and '"text"' in line
    ]

    parquet = base / "parquet"
    parquet.mkdir()
    expect_parquet = []
    rows = docs("bin-", 5)
    values = [r["text"].encode() for r in rows]
    values[2] = values[2][:40] + b"\xff\xfe" + values[2][40:]
    pq.write_table(
        pa.table({"id": [r["id"] for r in rows], "text": pa.array(values, pa.binary())}), parquet / "binary.parquet"
    )
    expect_parquet += [r["id"] for i, r in enumerate(rows) if i != 2]
    pq.write_table(pa.table({"id": ["i1", "i2", "i3"], "text": [1, 2, 3]}), parquet / "ints.parquet")
    rows = docs("null-", 3)
    pq.write_table(
        pa.table({"id": [r["id"] for r in rows], "text": [rows[0]["text"], None, rows[2]["text"]]}),
        parquet / "nulls.parquet",
    )
    expect_parquet += [rows[0]["id"], rows[2]["id"]]
    whole_file = parquet / "whole.parquet"
    pq.write_table(pa.table({"id": ["w"], "text": [next(good)]}), whole_file)
    (parquet / "cut.parquet").write_bytes(whole_file.read_bytes()[:-20])
    whole_file.unlink()

    warc = base / "warc"
    warc.mkdir()
    pages = sample_pages(6)
    records = [warc_record(page, f"https://news.example/{i}") for i, page in enumerate(pages)]
    (warc / "whole.warc.gz").write_bytes(b"".join(records[:2]))
    (warc / "cut-body.warc.gz").write_bytes(b"".join(records[2:4]) + records[4][: len(records[4]) // 2])
    (warc / "cut-member.warc.gz").write_bytes(records[5] + records[0][:5])
    junk = warc_record(pages[1], "https://news.example/junk", status=b"\x8f\x00\xffjunk\x01")
    (warc / "junk-status.warc.gz").write_bytes(junk)
    plain = warc_record(pages[3], "https://news.example/plain")
    (warc / "plain-named-gz.warc.gz").write_bytes(gzip.decompress(plain))
    return {
        "jsonl": (
            jsonl,
            {
                "wrong_schema": 2,
                "missing_text": 2,
                "corrupt_stream": 1,
                "truncated_stream": 1,
                "empty_file": 1,
                "malformed_json": 1,
                "invalid_utf8": 1,
                "not_an_object": 1,
            },
            {"too_large": 1},
            expect_jsonl,
        ),
        "parquet": (
            parquet,
            {"invalid_utf8": 1, "wrong_schema": 3, "missing_text": 1, "corrupt_parquet": 1},
            {},
            expect_parquet,
        ),
        # kept reads: 2 whole + 2 before the cut body + 1 before the cut member + 1 plain
        "warc": (warc, {"warc_truncated_record": 2, "http_decode_error": 1}, {}, 6),
    }


def job_file(folder: Path, fmt: str, **extra) -> Path:
    """The job over one case folder; the text cases cap documents at MAX_DOC_BYTES (web pages
    keep the default cap, above the sample's pages)."""
    stages = ("\n  - {stage: extract}" if fmt == "warc" else "") + STAGES
    if fmt != "warc":
        extra.setdefault("max_doc_bytes", MAX_DOC_BYTES)
    options = "".join(f", {k}: {json.dumps(v)}" for k, v in extra.items())
    path = folder.parent / f"{folder.name}-job.yaml"
    path.write_text(f'input: {{paths: ["{folder}/*"], format: {fmt}{options}}}\nstages:{stages}')
    return path


def check(stats: list[dict], errors: dict, dropped: dict, expect, run: Path) -> None:
    read = stats[0]
    assert read["errors_by_kind"] == errors
    assert read["dropped_by_reason"] == dropped
    check_invariants(stats)
    if isinstance(expect, int):  # web pages: every good record is read (extraction decides after)
        assert read["docs_kept"] == expect
        return
    assert read["docs_kept"] == len(expect)
    assert sorted(pq.read_table(run / "docs").column("id").to_pylist()) == sorted(expect)


@pytest.fixture(scope="module")
def ray_stats(cases, tmp_path_factory) -> dict:
    """The three jobs on the Ray runner: an embedded Ray in a child process (its own session
    and RAY_TMPDIR); every process it started must be gone once it exits."""
    base = tmp_path_factory.mktemp("fuzz-ray")
    jobs = {fmt: str(job_file(folder, fmt)) for fmt, (folder, *_) in cases.items()}
    script = (
        "import json, sys\n"
        "from refinery.pipeline.run import run\n"
        "from refinery.pipeline.config import load_job\n"
        "jobs, base = json.loads(sys.argv[1]), sys.argv[2]\n"
        "out = {fmt: [s.to_dict() for s in run(load_job(path), f'{base}/{fmt}', runner='ray')]\n"
        "       for fmt, path in jobs.items()}\n"
        "print(json.dumps(out))\n"
    )
    marker = uuid.uuid4().hex
    with tempfile.TemporaryDirectory(prefix="ray") as ray_tmp:  # short: Ray's socket paths are limited
        env = {**os.environ, "RAY_TMPDIR": ray_tmp, "RAY_DISABLE_USAGE_STATS": "1", MARKER: marker}
        done = subprocess.run(
            [sys.executable, "-c", script, json.dumps(jobs), str(base)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            start_new_session=True,
            cwd=base,
        )
        survivors = _marked(f"{MARKER}={marker}")
    for pid in survivors:
        os.kill(pid, 9)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not survivors, "Ray processes outlived the job"
    return {"base": base, **json.loads(done.stdout.strip().splitlines()[-1])}


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "warc"])
@pytest.mark.parametrize("runner", ["local", "spark"])
def test_runner_counts_every_bad_input(cases, fmt, runner, tmp_path, request):
    folder, errors, dropped, expect = cases[fmt]
    options = {"workers": 2} if runner == "local" else {"spark": request.getfixturevalue("spark")}
    stats = [s.to_dict() for s in run(load_job(job_file(folder, fmt)), tmp_path / "run", runner=runner, **options)]
    check(stats, errors, dropped, expect, tmp_path / "run")


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "warc"])
def test_ray_runner_counts_every_bad_input(cases, ray_stats, fmt):
    folder, errors, dropped, expect = cases[fmt]
    check(ray_stats[fmt], errors, dropped, expect, ray_stats["base"] / fmt)


def test_huge_document_truncated_on_request(cases, tmp_path):
    folder = cases["jsonl"][0]
    stats = run(load_job(job_file(folder, "jsonl", oversize="truncate")), tmp_path / "run", runner="local", workers=1)
    assert stats[0].extra == {"truncated": 1} and "too_large" not in stats[0].dropped_by_reason
    docs = pq.read_table(tmp_path / "run" / "docs").to_pydict()
    huge = docs["text"][docs["id"].index("huge")]
    assert MAX_DOC_BYTES * 0.99 < len(huge.encode()) <= MAX_DOC_BYTES


def test_every_path_and_glob_must_match(cases, tmp_path):
    good = cases["jsonl"][0] / "good.jsonl"
    for missing in (str(tmp_path / "nope.jsonl"), str(tmp_path / "*.nothing")):
        job = tmp_path / "job.yaml"
        job.write_text(f'input: {{paths: ["{good}", "{missing}"], format: jsonl}}\nstages: [{{stage: normalize}}]\n')
        with pytest.raises(ConfigError, match="matches no file") as err:
            load_job(job)
        assert err.value.key == "input.paths" and missing in str(err.value)
        job.write_text(
            f'input: {{paths: ["{good}", "{missing}"], format: jsonl, allow_missing: true}}\n'
            "stages: [{stage: normalize}]\n"
        )
        assert load_job(job).files == [str(good)]


@pytest.mark.parametrize("stage", ["tokenize", "langid"])
def test_a_file_that_is_not_a_model_is_one_config_error_before_work(cases, stage, tmp_path, capsys):
    fake = tmp_path / "fake.model"
    fake.write_bytes((ROOT / "README.md").read_bytes()[:4000])
    spec = {"tokenize": f"{{stage: tokenize, tokenizer: {fake}}}", "langid": f"{{stage: langid, model: {fake}}}"}[stage]
    job = tmp_path / "job.yaml"
    job.write_text(f'input: {{paths: ["{cases["jsonl"][0]}/good.jsonl"], format: jsonl}}\nstages: [{spec}]\n')
    out = tmp_path / "run"
    assert cli(["run", str(job), "--out", str(out), "--runner", "local"]) == 2
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1 and "is not a" in message and str(fake) in message
    assert not out.exists()


def test_out_naming_a_file_is_one_config_error(cases, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("mine")
    assert cli(["run", str(job_file(cases["jsonl"][0], "jsonl")), "--out", str(taken), "--runner", "local"]) == 2
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1 and "is a file" in message and taken.read_text() == "mine"


def test_rerun_removes_what_an_interrupted_attempt_left(cases, tmp_path):
    job = load_job(job_file(cases["jsonl"][0], "jsonl"))
    out = tmp_path / "run"
    run(job, out, runner="local", workers=1)

    def outputs() -> dict:  # statistics aside: they carry timings
        return {
            p.relative_to(out): p.read_bytes()
            for p in out.rglob("*")
            if p.is_file() and not {"_parts", "stats"} & set(p.relative_to(out).parts)
        }

    before = outputs()
    # what a SIGKILL in the middle of atomic writes leaves: temporary files beside their targets
    left = [
        out / "shards" / ".shard-000000-000000-000.arrow.0f.tmp",
        out / "docs" / ".part-000001-000000.parquet.1e.tmp",
        out / "_done" / ".s0-000002.2d.tmp",
    ]
    for path in left:
        path.write_bytes(b"half written")
    (out / "_done" / "s1-000000").unlink()  # and one unit to redo
    run(job, out, runner="local", workers=1)
    assert not [p for p in out.rglob("*.tmp")]
    assert outputs() == before


@pytest.mark.parametrize("change", [-1, +1])
def test_manifest_token_counts_are_checked_against_the_shard(cases, change, tmp_path):
    job = load_job(job_file(cases["jsonl"][0], "jsonl"))
    run(job, tmp_path / "run", runner="local", workers=1)
    shards = tmp_path / "run" / "shards"
    manifest = json.loads((shards / MANIFEST).read_text())
    first = manifest["shards"][0]
    first["blocks"][0][1] += change
    (shards / MANIFEST).write_text(json.dumps(manifest))
    dataset = TokenDataset(shards, seq_len=64, shuffle=False)
    with pytest.raises(ShardCorrupt, match=f"shard {first['path']}: block 0 holds"):
        next(iter(dataset))
    assert load_stats(tmp_path / "run")  # the run itself is untouched
