"""PII redaction: refinery's `pii` stage against datatrove's `PIIFormatter` on the same documents.

Input: the 724 real pages of tests/data/web/extracted.jsonl.gz, repeated `--repeat` times, each
copy with generated items planted between its sentences (tests/pii_samples.py: e-mail
addresses, public IPv4/IPv6 addresses, phone numbers, Luhn-valid card numbers, valid IBANs)
and look-alikes that must stay (versions, dates, times, ordinary numbers, ISBNs, private and
documentation IPs, a Luhn-invalid card number). The pages themselves may hold real contact
data; replacements of it are counted neither way.

Figures per kind: recall (planted items no longer present), look-alikes altered (false
replacements: should be 0), and throughput in MB/s on one core. datatrove replaces e-mail and
IP addresses only, so the race is run on those two kinds (`kinds: [email, ip]`) and ours is
also timed with every kind.

    python bench/pii.py [--repeat 4]
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
import time
from pathlib import Path

import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from pii_samples import look_alike, pii_item  # noqa: E402

from refinery.pipeline.stage import run_map_stage  # noqa: E402
from refinery.stages.pii import KINDS, Pii, PiiParams  # noqa: E402


def documents(repeat: int, seed: int = 0) -> tuple[list[str], list[list[tuple[str, str]]], list[list[str]]]:
    """Texts, their planted (kind, item) pairs and their planted look-alikes."""
    with gzip.open(ROOT / "tests/data/web/extracted.jsonl.gz", "rt") as fh:
        pages = [json.loads(line)["text"] for line in fh]
    rng = random.Random(seed)
    texts, planted, alikes = [], [], []
    for _ in range(repeat):
        for page in pages:
            sentences = page.split(". ")
            items = [(kind, pii_item(kind, rng)) for kind in rng.sample(KINDS, rng.randint(1, 3))]
            others = [look_alike(rng) for _ in range(rng.randint(1, 3))]
            for text in [f"Contact {item}" for _, item in items] + [f"It was {x}" for x in others]:
                sentences.insert(rng.randint(0, len(sentences)), text)
            texts.append(". ".join(sentences))
            planted.append(items)
            alikes.append(others)
    return texts, planted, alikes


def ours(texts: list[str], kinds: list[str]) -> tuple[list[str], float]:
    stage = Pii(PiiParams(kinds=kinds, replacement="<{kind}>"))
    n = len(texts)
    batches = [
        pa.RecordBatch.from_pydict(
            {
                "id": [str(i) for i in range(a, min(a + 2000, n))],
                "text": pa.array(texts[a : a + 2000], pa.large_string()),
                "url": [None] * len(texts[a : a + 2000]),
                "source": ["bench"] * len(texts[a : a + 2000]),
            }
        )
        for a in range(0, n, 2000)
    ]
    start = time.process_time()
    out = [run_map_stage(stage, b)[0].column("text") for b in batches]
    seconds = time.process_time() - start
    return [t for col in out for t in col.to_pylist()], seconds


def datatrove(texts: list[str]) -> tuple[list[str], float]:
    from datatrove.pipeline.formatters import PIIFormatter

    formatter = PIIFormatter()
    start = time.process_time()
    out = [formatter.format(t) for t in texts]
    return out, time.process_time() - start


def score(name: str, out: list[str], planted, alikes, kinds) -> dict:
    found = {k: [0, 0] for k in kinds}
    altered = total_alikes = 0
    for text, items, others in zip(out, planted, alikes):
        for kind, item in items:
            if kind in found:
                found[kind][1] += 1
                found[kind][0] += item not in text
        for other in others:
            total_alikes += 1
            altered += f"It was {other}" not in text
    row = {
        "system": name,
        **{f"recall_{k}": round(a / b, 4) if b else None for k, (a, b) in found.items()},
        "look_alikes_altered": altered,
        "look_alikes": total_alikes,
    }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=4)
    args = parser.parse_args()
    texts, planted, alikes = documents(args.repeat)
    mb = sum(len(t.encode()) for t in texts) / 1e6
    print(f"{len(texts)} documents, {mb:.1f} MB")
    two = ["email", "ip"]
    ours_two, ours_two_s = ours(texts, two)
    peer, peer_s = datatrove(texts)
    ours_all, ours_all_s = ours(texts, list(KINDS))
    rows = [
        score("refinery pii, email+ip", ours_two, planted, alikes, two),
        score("datatrove PIIFormatter", peer, planted, alikes, two),
        score("refinery pii, all kinds", ours_all, planted, alikes, list(KINDS)),
    ]
    for row, seconds in zip(rows, (ours_two_s, peer_s, ours_all_s)):
        row["mb_per_s"] = round(mb / seconds, 2)
        print(json.dumps(row))
    print(
        f"ratio (email+ip, MB/s per core): {rows[0]['mb_per_s'] / rows[1]['mb_per_s']:.2f}x datatrove; "
        f"all kinds: {rows[2]['mb_per_s'] / rows[1]['mb_per_s']:.2f}x"
    )


if __name__ == "__main__":
    main()
