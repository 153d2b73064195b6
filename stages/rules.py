"""Heuristic quality rules: Gopher quality and repetition, C4 (+ paragraph, bad words), FineWeb
and the InternLM2 report's format rules, compiled over each Arrow batch.

Every rule is a named drop reason (`gopher_too_few_words`, `c4_badwords`, ...); a family set to
`null` in the config is off. All families judge the same input text, and every failing rule is
recorded (the first, in the order below, is the drop reason). Words are split by
`refinery.stages.words`; Chinese and Japanese documents (by the `lang` column of a preceding
`langid`, else by script) count characters as words and skip the English-only rules.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from refinery.pipeline.core import Strict
from refinery.pipeline.resources import bundled
from refinery.pipeline.stage import MapStage, StageParams, Verdict, set_column
from refinery.stages import rule_families as rf

# The bundled LDNOOBW lists, one file per language (refinery.pipeline.resources.bundled).
BADWORDS = "conf/rules/badwords"


class GopherQuality(Strict):
    """Rae et al. 2021 (Gopher), appendix A1 "quality filters"; datatrove GopherQualityFilter defaults."""

    min_doc_words: int | None = 50
    max_doc_words: int | None = 100_000
    min_avg_word_length: float | None = 3
    max_avg_word_length: float | None = 10
    max_symbol_word_ratio: float | None = 0.1  # '#' and ellipses per word
    max_bullet_lines_ratio: float | None = 0.9
    max_ellipsis_lines_ratio: float | None = 0.3
    min_alpha_words_ratio: float | None = 0.8  # words with at least one letter
    min_stop_words: int | None = 2
    stop_words: list[str] = ["the", "be", "to", "of", "and", "that", "have", "with"]
    # The stop words are English: the rule applies to these languages (and to documents with no
    # `lang` column, as in Gopher, which ran on English only).
    stop_words_languages: list[str] = ["en"]


class GopherRepetition(Strict):
    """Rae et al. 2021 (Gopher), table A1."""

    dup_line_frac: float | None = 0.3
    dup_para_frac: float | None = 0.3
    dup_line_char_frac: float | None = 0.2
    dup_para_char_frac: float | None = 0.2
    top_n_grams: list[tuple[int, float]] = [(2, 0.2), (3, 0.18), (4, 0.16)]
    dup_n_grams: list[tuple[int, float]] = [(5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)]


class C4Quality(Strict):
    """Raffel et al. 2020 (C4), section 2.2, and its reference code (tfds c4_utils).

    FineWeb ran it with `filter_no_terminal_punct: false`; C4 itself with true."""

    filter_no_terminal_punct: bool = True
    min_num_sentences: int = 5
    min_words_per_line: int = 3
    max_word_length: int | None = 1000
    remove_citations: bool = True
    filter_lorem_ipsum: bool = True
    filter_javascript: bool = True
    filter_curly_bracket: bool = True
    filter_policy: bool = True
    # C4 also rewrites the page to its kept lines; with false the stage only judges.
    remove_lines: bool = False


class C4Paragraph(Strict):
    """mC4 (Xue et al. 2021): at least 3 lines of 200+ characters (tfds c4_utils.paragraph_filter)."""

    min_paragraphs: int = 3
    min_paragraph_length: int = 200


class C4BadWords(Strict):
    """C4: drop pages with a word of the LDNOOBW list of the document's language.

    Off by default (`c4_badwords: {}` turns it on, for parity with C4): one listed word anywhere
    drops a page, which removes clean prose by and about minorities, history and medicine
    ("intercourse", "bondage of slavery", "Dick" as a name; Dodge et al. 2021). FineWeb does not
    use it; the classify stage's word blocklist judges by hit rate instead."""

    # Folder of <lang>.txt lists; default: the bundled conf/rules/badwords.
    folder: str | None = None
    default_language: str = "en"


class FineWebQuality(Strict):
    """Penedo et al. 2024 (FineWeb), section 3.4 custom filters; datatrove FineWebQualityFilter."""

    line_punct_thr: float = 0.12
    line_punct_exclude_zero: bool = False
    stop_chars: list[str] | None = None  # default: Unicode Sentence_Terminal characters
    short_line_thr: float = 0.67
    short_line_length: int = 30
    char_duplicates_ratio: float = 0.01
    new_line_ratio: float = 0.3


class InternLM2Format(Strict):
    """Cai et al. 2024 (InternLM2), 3.1.1: rules for abnormal separators and line breaks, abnormal
    character frequencies and punctuation distribution. The report gives no thresholds; these are
    ours, set so that ordinary prose, lists and code-free articles of the bundled samples pass."""

    max_line_chars: int = 20_000  # one "line" longer than this: lost line breaks
    min_lines_for_ratios: int = 10
    min_chars_per_line: float = 8.0  # text shredded into tiny lines
    max_separator_lines: float = 0.1  # lines made only of a repeated separator (----, ====)
    max_separator_runs: int = 2  # runs of 20+ separator characters
    min_word_char_ratio: float = 0.5  # letters and digits among visible characters
    max_broken_char_ratio: float = 0.01  # U+FFFD and control characters (bad decoding)
    max_punct_ratio: float = 0.3
    min_punct_ratio: float = 0.002
    min_chars_for_punct_check: int = 500


class RulesParams(StageParams):
    gopher_quality: GopherQuality | None = GopherQuality()
    gopher_repetition: GopherRepetition | None = GopherRepetition()
    c4_quality: C4Quality | None = C4Quality()
    c4_paragraph: C4Paragraph | None = None
    c4_badwords: C4BadWords | None = None
    fineweb_quality: FineWebQuality | None = FineWebQuality()
    internlm2: InternLM2Format | None = InternLM2Format()


class Rules(MapStage):
    kind = "rules"
    Params = RulesParams
    columns = {"rules_failed": pa.list_(pa.string())}

    def __init__(self, params, **kw):
        super().__init__(params, **kw)
        bw = params.c4_badwords
        # the bundled lists are looked up only when the family is on
        self.badwords = rf.BadWords(Path(bw.folder) if bw.folder else bundled(BADWORDS)) if bw else None

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
        """Load the compiled kernels (from numba's cache, or compiled once) and the character
        table by judging one short text, so that no batch pays for it."""
        self.judge(rf.Texts(pa.array(["Warm up.\nA line."], type=pa.large_string()), None))

    def judge(self, texts: rf.Texts) -> tuple[np.ndarray, pa.Array | None]:
        """Every rule's verdict on every document (columns in `rule_names` order) and, with C4's
        `remove_lines`, the reduced texts."""
        p: RulesParams = self.params
        verdicts: list[np.ndarray] = []
        reduced = None
        if p.gopher_repetition:
            verdicts.append(rf.gopher_repetition(p.gopher_repetition, texts))
        if p.gopher_quality:
            verdicts.append(rf.gopher_quality(p.gopher_quality, texts))
        if p.c4_quality:
            c4, reduced = rf.c4_quality(p.c4_quality, texts)
            verdicts.append(c4)
        if p.c4_paragraph:
            verdicts.append(rf.c4_paragraph(p.c4_paragraph, texts))
        if p.c4_badwords:
            verdicts.append(rf.c4_badwords(p.c4_badwords, texts, self.badwords))
        if p.fineweb_quality:
            verdicts.append(rf.fineweb_quality(p.fineweb_quality, texts))
        if p.internlm2:
            verdicts.append(rf.internlm2(p.internlm2, texts))
        return np.hstack(verdicts) if verdicts else np.zeros((len(texts.column), 0), dtype=bool), reduced

    def process(self, batch: pa.RecordBatch) -> Verdict:
        column = batch.column("text")
        langs = batch.column("lang") if "lang" in batch.schema.names else None
        verdicts, reduced = self.judge(rf.Texts(column, langs))
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


def rule_names(p: RulesParams) -> list[str]:
    """Every rule the configured families can report, in priority order."""
    names: list[str] = []
    if p.gopher_repetition:
        names += rf.gopher_repetition_names(p.gopher_repetition)
    if p.gopher_quality:
        names += rf.GOPHER_QUALITY
    if p.c4_quality:
        names += rf.C4_QUALITY
    if p.c4_paragraph:
        names += rf.C4_PARAGRAPH
    if p.c4_badwords:
        names += rf.C4_BADWORDS
    if p.fineweb_quality:
        names += rf.FINEWEB_QUALITY
    if p.internlm2:
        names += rf.INTERNLM2
    return names
