"""The `pii` stage: every kind found and replaced in real text, look-alikes left alone, nothing
dropped, counts and before/after examples in the statistics, the same on every runner."""

from __future__ import annotations

import gzip
import json
import pickle
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from funnel_checks import check_invariants
from pii_samples import look_alike, pii_item

from refinery.pipeline.config import ConfigError, validate
from refinery.pipeline.run import run as run_job
from refinery.pipeline.stage import run_map_stage
from refinery.stages.pii import KINDS, Pii, PiiParams, iban_ok, luhn_ok

PAGES = Path(__file__).resolve().parent / "data" / "web" / "extracted.jsonl.gz"


def batch(texts: list[str]) -> pa.RecordBatch:
    n = len(texts)
    return pa.RecordBatch.from_pydict(
        {
            "id": [f"d{i}" for i in range(n)],
            "text": pa.array(texts, pa.large_string()),
            "url": [None] * n,
            "source": ["test"] * n,
        }
    )


def run(texts: list[str], **params) -> tuple[list[str], list[int], object]:
    out, stats = run_map_stage(Pii(PiiParams(**params)), batch(texts))
    return out.column("text").to_pylist(), out.column("pii_replacements").to_pylist(), stats


def real_paragraphs(n: int) -> list[str]:
    with gzip.open(PAGES, "rt") as fh:
        texts = [json.loads(line)["text"] for line in fh]
    return [t[:1500] for t in texts[:n]]


def test_checksums():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("DE89 3704 0044 0532 0130 00") and not iban_ok("DE89 3704 0044 0532 0130 01")
    assert not iban_ok("DE89 3704 0044 0532 0130")  # Germany's IBANs have 22 characters


def test_each_kind_planted_in_real_text_is_replaced():
    rng = random.Random(7)
    texts, planted = [], []
    for i, base in enumerate(real_paragraphs(60)):
        kind = KINDS[i % len(KINDS)]
        item = pii_item(kind, rng)
        cut = base.find(". ") + 2 or len(base)
        texts.append(f"{base[:cut]}Contact: {item}. {base[cut:]}")
        planted.append((kind, item))
    out, counts, stats = run(texts)
    for (kind, item), text, count in zip(planted, out, counts):
        assert item not in text and f"<{kind}>" in text, (kind, item)
        assert count >= 1
    assert stats.docs_kept == len(texts) and stats.docs_dropped == 0
    for kind in KINDS:
        assert stats.extra[f"pii_{kind}"] >= 12
        example = stats.examples[f"pii_{kind}"][0]["text"]
        assert " ⟶ " in example and f"<{kind}>" in example.split(" ⟶ ")[1]


def test_look_alikes_and_ordinary_numbers_stay():
    rng = random.Random(3)
    alikes = [look_alike(rng) for _ in range(300)]
    text = "Figures: " + "; ".join(alikes) + ". Meet at 10:30 on 2024-01-15, call ext. 4412, pi is 3.14159."
    out, counts, _ = run([text])
    assert out == [text] and counts == [0]


def test_private_addresses_follow_the_setting():
    text = "Router 192.168.1.1, docs 203.0.113.9, loopback ::1, public 8.8.4.4 and 2001:4860:4860::8844."
    (public,), _, _ = run([text], kinds=["ip"])
    assert public == "Router 192.168.1.1, docs 203.0.113.9, loopback ::1, public <ip> and <ip>."
    (every,), counts, _ = run([text], kinds=["ip"], ip_addresses="all", replacement="[{kind}]")
    assert every.count("[ip]") == 5 and counts == [5]


def test_stage_travels_to_worker_processes():
    """Runners pickle the plan with its stages; a copy replaces exactly what the original does."""
    text = "Mail anna@mail-host.net, call +44 20 7946 0958, card 4111 1111 1111 1111."
    stage = Pii(PiiParams())
    copy = pickle.loads(pickle.dumps(stage))
    assert run_map_stage(copy, batch([text]))[0].column("text").to_pylist() == run([text])[0]


def test_config_errors():
    with pytest.raises(ConfigError, match="kinds"):
        validate({"input": {"paths": [str(PAGES)], "format": "jsonl"}, "stages": [{"stage": "pii", "kinds": ["ssn"]}]})


@pytest.mark.parametrize("runner", ["local", "spark", "ray"])
def test_runners_agree(runner, tmp_path, runner_options):
    rng = random.Random(11)
    rows = [
        {"id": f"p{i}", "text": f"{t} Reach me at {pii_item(KINDS[i % 5], rng)} or {look_alike(rng)}."}
        for i, t in enumerate(real_paragraphs(40))
    ]
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    job = validate({"input": {"paths": [str(data)], "format": "jsonl"}, "stages": [{"stage": "pii"}]})
    stats = [s.to_dict() for s in run_job(job, tmp_path / "run", runner=runner, **runner_options(runner, 1))]
    check_invariants(stats)
    docs = pq.read_table(tmp_path / "run" / "docs").sort_by("id").to_pydict()
    expected, _, _ = run([r["text"] for r in sorted(rows, key=lambda r: r["id"])])
    assert docs["text"] == expected
    assert sum(stats[1]["extra"].values()) == sum(docs["pii_replacements"]) >= 40
