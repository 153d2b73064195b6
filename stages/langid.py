"""Language identification with fastText's lid.176 model, one batched call per Arrow batch.

The model is the compressed `lid.176.ftz` (Joulin et al., 2016; CC BY-SA 3.0), shipped in
`models/`. Text is prepared as the model was trained: one line, newlines replaced by spaces.
The small model confuses short Chinese with Japanese; with `cjk_script_check` the label is
corrected from the script (Han without any kana is not Japanese; kana-rich text is not Chinese).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from refinery.classifiers.fasttext_model import load_fasttext
from refinery.pipeline.resources import bundled, resolve_path
from refinery.pipeline.stage import MapStage, StageParams, Verdict, set_column
from refinery.pipeline.stats import HistogramSpec

# The bundled model, by its name in the checkout; DEFAULT_MODEL is its path (looked up on use).
MODEL = "models/lid.176.ftz"
_KANA = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# Japanese prose is about a third kana or more; Chinese text borrowing a brand name has very little.
KANA_SHARE_JA = 0.1


class LangIdParams(StageParams):
    # fastText model file; default: the bundled models/lid.176.ftz.
    model: str | None = None
    # Keep-list of ISO 639-1 codes; empty keeps every language that passes the threshold.
    languages: list[str] = []
    # FineWeb keeps English with a lid.176 score above 0.65 (datatrove LanguageFilter default).
    threshold: float = Field(default=0.65, ge=0, le=1)
    cjk_script_check: bool = True
    # Only the first characters are read: predictions are stable long before that, and a huge
    # document costs no more than a large one.
    max_chars: int = Field(default=100_000, gt=0)


def resolve_model(path: str | None, base: Path | None = None) -> Path:
    """The bundled lid.176 when no model is given, else the path as resolve_path finds it."""
    return bundled(MODEL) if path is None else resolve_path(path, base)


def __getattr__(name: str):
    if name == "DEFAULT_MODEL":
        return bundled(MODEL)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def script_label(text: str, label: str) -> str:
    """Correct a zh/ja confusion from the script of the text."""
    if label not in ("ja", "zh"):
        return label
    kana = len(_KANA.findall(text))
    han = len(_HAN.findall(text))
    if label == "ja" and kana == 0 and han > 0:
        return "zh"
    if label == "zh" and kana > KANA_SHARE_JA * (kana + han):
        return "ja"
    return label


class LangId(MapStage):
    kind = "langid"
    Params = LangIdParams
    columns = {"lang": pa.string(), "lang_score": pa.float32()}
    histograms = {"lang_score": HistogramSpec(0.0, 1.0, 20)}
    uses_model = True

    def __init__(self, params, **kw):
        super().__init__(params, **kw)
        self.model = None

    @classmethod
    def check_params(cls, params: LangIdParams, base) -> LangIdParams:
        path = resolve_model(params.model, Path(base))
        if not path.is_file():
            raise ValueError(f"model: no such file {path}")
        load_fasttext(path)
        return params.model_copy(update={"model": str(path)})

    def setup(self) -> None:
        self.model = load_fasttext(resolve_model(self.params.model))

    def predict(self, texts: list[str]) -> tuple[list[str], np.ndarray]:
        """Top language and its probability for each text (texts already one line each)."""
        labels, probs = self.model.predict(texts, k=1)
        langs = [lab[0][9:] if lab else "" for lab in labels]  # strip "__label__"
        return langs, np.array([p[0] if len(p) else 0.0 for p in probs], dtype=np.float32)

    def process(self, batch: pa.RecordBatch) -> Verdict:
        p: LangIdParams = self.params
        text = batch.column("text")
        prepared = pc.replace_substring(pc.utf8_slice_codeunits(text, 0, p.max_chars), "\n", " ")
        empty = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(prepared)), 0).to_numpy(zero_copy_only=False)
        texts = prepared.to_pylist()
        live = np.flatnonzero(~empty)
        langs: list = [None] * len(texts)
        scores = np.full(len(texts), np.nan, dtype=np.float32)
        if len(live):
            found, probs = self.predict([texts[i] for i in live])
            for j, i in enumerate(live):
                langs[i] = script_label(texts[i], found[j]) if p.cjk_script_check else found[j]
            scores[live] = probs
        batch = set_column(batch, "lang", pa.array(langs, type=pa.string()))
        batch = set_column(batch, "lang_score", pa.array(scores, type=pa.float32(), mask=empty))
        failed = {"empty_text": empty}
        if p.languages:
            failed["lang_not_allowed"] = np.array([lang not in p.languages for lang in langs]) & ~empty
        failed["low_lang_score"] = ~empty & ~(scores > p.threshold)
        return Verdict(batch, failed)
