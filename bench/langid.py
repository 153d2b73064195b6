"""Language-ID accuracy: our `langid` stage vs the same lid.176.ftz model called directly.

    python bench/langid.py [SHARED_DATA]

Per language, on lingua-py's test sentences (1000 per language where available) and on the
lines of the Universal Declaration of Human Rights (NLTK udhr2). "raw" is
`fasttext.load_model(...).predict(text)` on the text with newlines replaced (fastText rejects
them); "ours" is the stage, with its CJK script check.
"""

from __future__ import annotations

import gzip
import sys
import zipfile
from pathlib import Path

import pyarrow as pa

from refinery.stages.langid import LangId, LangIdParams

# UDHR files (ISO 639-3, script) → lid.176 labels (ISO 639-1).
UDHR = {
    "arb": "ar",
    "ces": "cs",
    "cmn_hans": "zh",
    "cmn_hant": "zh",
    "deu": "de",
    "ell_monotonic": "el",
    "eng": "en",
    "fin": "fi",
    "fra": "fr",
    "heb": "he",
    "hin": "hi",
    "ind": "id",
    "ita": "it",
    "jpn": "ja",
    "kor": "ko",
    "nld": "nl",
    "pol": "pl",
    "por_PT": "pt",
    "rus": "ru",
    "spa": "es",
    "swe": "sv",
    "tha": "th",
    "tur": "tr",
    "ukr": "uk",
    "vie": "vi",
}


def accuracy(stage: LangId, texts: list[str], lang: str) -> tuple[float, float]:
    batch = pa.RecordBatch.from_pylist(
        [{"id": str(i), "text": t, "url": None, "source": ""} for i, t in enumerate(texts)]
    )
    ours = stage.process(batch).batch.column("lang").to_pylist()
    raw, _ = stage.predict([t.replace("\n", " ") for t in texts])
    return sum(x == lang for x in ours) / len(texts), sum(x == lang for x in raw) / len(texts)


def main(shared: Path) -> None:
    stage = LangId(LangIdParams())
    stage.setup()
    rows = []
    for path in sorted((shared / "lingua_langid_testdata" / "sentences").glob("*.txt.gz")):
        lang = path.name.split(".")[0]
        texts = [t for t in gzip.open(path, "rt", encoding="utf-8").read().splitlines() if t.strip()]
        rows.append(("lingua sentences", lang, len(texts), *accuracy(stage, texts, lang)))
    with zipfile.ZipFile(shared / "nltk_corpora" / "udhr2.zip") as z:
        for name, lang in sorted(UDHR.items()):
            lines = [t for t in z.read(f"udhr2/{name}.txt").decode("utf-8").splitlines() if len(t.strip()) >= 20]
            rows.append(("UDHR lines", f"{lang} ({name})", len(lines), *accuracy(stage, lines, lang)))
    print("| set | language | texts | ours | raw model |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row[0]} | {row[1]} | {row[2]} | {row[3]:.3f} | {row[4]:.3f} |")
    for name in ("lingua sentences", "UDHR lines"):
        sel = [r for r in rows if r[0] == name]
        total = sum(r[2] for r in sel)
        print(
            f"{name}: micro accuracy ours {sum(r[2] * r[3] for r in sel) / total:.4f}, "
            f"raw {sum(r[2] * r[4] for r in sel) / total:.4f}; languages where ours < raw: "
            f"{[r[1] for r in sel if r[3] < r[4]]}"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "data")
