"""The `rules` stage: every configured rule family judges each batch, compiled over it.

Every rule is a named drop reason (`gopher_too_few_words`, `c4_badwords`, ...); a family set to
`null` in the config is off. All families judge the same input text, and every failing rule is
recorded (the first, in the order of `FAMILIES`, is the drop reason). Words are split by
`refinery.stages.words`; Chinese and Japanese documents (by the `lang` column of a preceding
`langid`, else by script) count characters as words and skip the English-only rules. Each
family, its parameters and its table of rules live in one module of this package.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from refinery.pipeline.stage import MapStage, StageParams, Verdict, set_column
from refinery.stages.rules import c4, fineweb, gopher_quality, gopher_repetition, internlm2
from refinery.stages.rules.c4 import C4BadWords, C4Paragraph, C4Quality
from refinery.stages.rules.family import Family, Texts
from refinery.stages.rules.fineweb import FineWebQuality
from refinery.stages.rules.gopher_quality import GopherQuality
from refinery.stages.rules.gopher_repetition import GopherRepetition
from refinery.stages.rules.internlm2 import InternLM2Format

# The families in priority order: a document's drop reason is the first rule it fails here.
FAMILIES: list[Family] = [
    gopher_repetition.FAMILY,
    gopher_quality.FAMILY,
    c4.QUALITY,
    c4.PARAGRAPH,
    c4.BADWORDS,
    fineweb.FAMILY,
    internlm2.FAMILY,
]


class RulesParams(StageParams):
    gopher_quality: GopherQuality | None = GopherQuality()
    gopher_repetition: GopherRepetition | None = GopherRepetition()
    c4_quality: C4Quality | None = C4Quality()
    c4_paragraph: C4Paragraph | None = None
    c4_badwords: C4BadWords | None = None
    fineweb_quality: FineWebQuality | None = FineWebQuality()
    internlm2: InternLM2Format | None = InternLM2Format()


def active(p: RulesParams) -> list[tuple[Family, object]]:
    """The families that are on, with their parameters, in priority order."""
    return [(family, getattr(p, family.key)) for family in FAMILIES if getattr(p, family.key) is not None]


def rule_names(p: RulesParams) -> list[str]:
    """Every rule the configured families can report, in priority order."""
    return [name for family, params in active(p) for name in family.rules(params)]


class Rules(MapStage):
    kind = "rules"
    Params = RulesParams
    columns = {"rules_failed": pa.list_(pa.string())}

    @classmethod
    def check_params(cls, params: RulesParams, base) -> RulesParams:
        bw = params.c4_badwords
        if bw is None or bw.folder is None:
            return params
        folder = Path(bw.folder) if Path(bw.folder).is_absolute() else Path(base) / bw.folder
        if not folder.is_dir():
            raise ValueError(f"c4_badwords.folder: no such folder {folder}")
        return params.model_copy(update={"c4_badwords": bw.model_copy(update={"folder": str(folder.resolve())})})

    def setup(self) -> None:
        """Load the compiled kernels (from numba's cache, or compiled once), the character table
        and the bad-word lists by judging one short text, so that no batch pays for it."""
        self.judge(Texts(pa.array(["Warm up.\nA line."], type=pa.large_string()), None))

    def judge(self, texts: Texts) -> tuple[np.ndarray, pa.Array | None]:
        """Every rule's verdict on every document (columns in `rule_names` order) and, with C4's
        `remove_lines`, the reduced texts."""
        verdicts: list[np.ndarray] = []
        reduced = None
        for family, params in active(self.params):
            verdict, text = family.judge(params, texts)
            verdicts.append(verdict)
            reduced = text if text is not None else reduced
        return np.hstack(verdicts) if verdicts else np.zeros((len(texts.column), 0), dtype=bool), reduced

    def process(self, batch: pa.RecordBatch) -> Verdict:
        column = batch.column("text")
        langs = batch.column("lang") if "lang" in batch.schema.names else None
        verdicts, reduced = self.judge(Texts(column, langs))
        names = rule_names(self.params)
        missing = pc.is_null(column)
        errors = {}
        if column.null_count:
            errors["rules_missing_text"] = missing.to_numpy(zero_copy_only=False)
            verdicts[errors["rules_missing_text"]] = False
        failed = {name: verdicts[:, j] for j, name in enumerate(names) if verdicts[:, j].any()}
        rows, cols = np.nonzero(verdicts)
        offsets = np.zeros(len(batch) + 1, dtype=np.int32)
        np.cumsum(np.bincount(rows, minlength=len(batch)), out=offsets[1:])
        lists = pa.ListArray.from_arrays(pa.array(offsets), pa.array(names, type=pa.string()).take(cols), mask=missing)
        if reduced is not None:
            batch = set_column(batch, "text", pc.if_else(missing, column, reduced))
        batch = set_column(batch, "rules_failed", lists)
        return Verdict(batch, failed, errors)
