"""The batch versions of the text stages equal the per-document references (tests/text_reference.py):
normalize gives the same text; the compiled rules give the same word tokens, the same failed
rules in the same order and the same C4-reduced text; on every real page of the fixture and on
generated edge cases, with every rule family on."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pyarrow as pa
import pytest
import text_reference as reference

from refinery.pipeline.resources import bundled
from refinery.stages.normalize import Normalize, NormalizeParams
from refinery.stages.rules import Rules, RulesParams
from refinery.stages.rules.c4 import BADWORDS_FOLDER
from refinery.stages.words import split_words

PAGES = [
    json.loads(line)["text"] for line in gzip.open(Path(__file__).parent / "data" / "web" / "extracted.jsonl.gz", "rt")
]
LANGS = [None, "en", "zh", "ja", "de", "ar", ""]
# Pieces that exercise every alternative of the word pattern and every character class the rules use.
PIECES = [
    "http://a.b/c).",
    "https://x.org/p?q=1,",
    "www.foo.com",
    "www.",
    "http://",
    "a@b.co",
    "x.y+z@d-e.f.g.",
    "@",
    ".@x.y",
    "U.S.",
    "e.g.",
    "A.B",
    "Mr.",
    "Mrs.",
    "Sept.",
    "St",
    "vs.",
    "Im",
    "cannot",
    "Cannot",
    "gonna",
    "gotta",
    "wanna",
    "'s",
    "'S",
    "'ſ",
    "'re",
    "’ll",
    "'t's",
    "don't",
    "rock'n'roll",
    "3.5",
    "1,000",
    "24/7",
    "10:30",
    "Covid-19",
    "a-",
    "b/",
    "well-known",
    "...",
    "…",
    "--",
    "-",
    "—",
    "#",
    "•",
    "- item",
    "====",
    "·····",
    "=" * 25,
    "中文",
    "测试。",
    "日本語の",
    "カタカナ",
    "！",
    "？",
    "。。",
    "」",
    "』",
    "”",
    "’",
    "שלום",
    "مرحبا",
    "עברית.",
    "١٢٣",
    "〇",
    "Ⅻ",
    "²",
    "½",
    "İstanbul",
    "\u212a",
    "ß",
    "ﬆ",
    "e\u0301",
    "\ufffd",
    "\x00",
    "\x07",
    "\x1f",
    "\x7f",
    "[1]",
    "[]",
    "[edit]",
    "[citation needed]",
    "[12a]",
    "[١]",
    "{",
    "lorem ipsum",
    "LOREM IPSUM",
    "JavaScript",
    "javascr\u0130pt",
    "privacy policy",
    "coo\u212aies",
    "the",
    "of",
    "and",
    "that",
    "with",
    "porn",
    "Dick",
    "!",
    "?",
    ".",
    '"',
    ")",
    "(",
    "%",
    "😀",
    "👍🏽",
    "\u200d",
    "\u00ad",
    "sentence",
    "quick brown fox",
]
SPACES = [
    " ",
    " ",
    " ",
    "  ",
    "\n",
    "\n",
    "\n\n",
    "\t",
    "\r\n",
    "\r",
    "\x0b",
    "\x0c",
    "\x1c",
    "\x1e",
    "\x1f",
    "\x85",
    "\u2028",
    "\u3000",
    "\xa0",
    "\u2009",
    "\u200b",
    "",
]


def generated(n: int, seed: int = 0) -> list[str]:
    """Edge cases, then random mixtures of the pieces and slices of real pages."""
    rng = random.Random(seed)
    docs = [
        "",
        " \n\t ",
        "。。。，，！？、",
        "!!!...???---",
        "!?" * 500,
        "x" * 300_000,
        ("word " * 20_000).strip(),
        b"broken \xed\xa0\x80 surrogate \xf0\x9f".decode("utf-8", "replace") * 50,
        "مرحبا بالعالم. هذه جملة عربية طويلة بما يكفي.\n" * 30,
        "שלום עולם. זה משפט בעברית.\n" * 30,
        "这是一个很长的中文段落，没有空格。" * 200,
        "これは日本語の文章です。" * 100,
    ]
    while len(docs) < n:
        if rng.random() < 0.2:
            page = rng.choice(PAGES)
            i = rng.randrange(len(page) + 1)
            docs.append(page[i : i + rng.randrange(1, 4000)])
            continue
        text = "".join(rng.choice(PIECES) + rng.choice(SPACES) for _ in range(rng.choice([1, 2, 5, 20, 80, 300])))
        docs.append("\n".join([text] * rng.randrange(1, 4)))
    return docs


def judged(params: RulesParams, texts: list[str], langs: list[str | None] | None):
    rows = [{"id": str(i), "text": t} for i, t in enumerate(texts)]
    if langs is not None:
        for row, lang in zip(rows, langs):
            row["lang"] = lang
    out = Rules(params).process(pa.RecordBatch.from_pylist(rows)).batch
    return out.column("rules_failed").to_pylist(), out.column("text").to_pylist()


def expected(params: RulesParams, texts: list[str], langs: list[str | None] | None):
    bw = params.c4_badwords
    lists = reference.badword_patterns(Path(bw.folder) if bw.folder else bundled(BADWORDS_FOLDER)) if bw else None
    failed, rewritten = [], []
    for i, text in enumerate(texts):
        rules, reduced = reference.judge(params, lists, text, None if langs is None else langs[i])
        failed.append(rules)
        rewritten.append(reduced if params.c4_quality.remove_lines and reduced is not None else text)
    return failed, rewritten


ALL_FAMILIES = RulesParams(c4_paragraph={}, c4_badwords={})
# Thresholds moved so that rules that rarely fire on real pages fire often, and C4 rewrites pages.
MOVED = RulesParams(
    c4_paragraph={"min_paragraphs": 2, "min_paragraph_length": 40},
    c4_badwords={},
    c4_quality={"remove_lines": True, "filter_no_terminal_punct": False, "min_num_sentences": 1, "max_word_length": 12},
    gopher_quality={
        "min_doc_words": 3,
        "stop_words": ["the", "of", "the"],
        "min_stop_words": 1,
        "max_avg_word_length": None,
    },
    gopher_repetition={
        "top_n_grams": [(1, 0.1), (2, 0.05)],
        "dup_n_grams": [(2, 0.05), (3, 0.01)],
        "dup_line_frac": None,
    },
    fineweb_quality={"stop_chars": [".", "!?", "。"], "line_punct_exclude_zero": True},
    internlm2={"min_lines_for_ratios": 2, "max_separator_runs": 0},
)


@pytest.mark.parametrize("cjk", [False, True])
def test_tokens_equal_the_pattern(cjk):
    pattern = reference.TOKEN_CJK if cjk else reference.TOKEN
    for text in PAGES + generated(400, seed=1):
        assert split_words(text, cjk) == pattern.findall(text), text[:200]


@pytest.mark.parametrize("params", [ALL_FAMILIES, MOVED], ids=["defaults", "moved"])
def test_real_pages_decided_alike(params):
    langs = [LANGS[i % len(LANGS)] for i in range(len(PAGES))]
    for batch_langs in (None, langs):
        ours = judged(params, PAGES, batch_langs)
        assert ours == expected(params, PAGES, batch_langs)
    assert sum(map(bool, ours[0])) > 100  # the rules did fire


@pytest.mark.parametrize("params", [ALL_FAMILIES, MOVED], ids=["defaults", "moved"])
def test_edge_cases_decided_alike(params):
    texts = generated(1500)
    langs = [LANGS[i % len(LANGS)] for i in range(len(texts))]
    for batch_langs in (None, langs):
        failed, rewritten = judged(params, texts, batch_langs)
        want_failed, want_rewritten = expected(params, texts, batch_langs)
        for i, text in enumerate(texts):
            assert (failed[i], rewritten[i]) == (want_failed[i], want_rewritten[i]), text[:300]
    fired = {rule for rules in failed for rule in rules}
    assert len(fired) >= 20, fired


@pytest.mark.parametrize("form", ["NFC", "NFKC"])
def test_normalize_equals_the_reference(form):
    texts = PAGES + generated(1500) + ["a \t\xa0\r\n\r\n\r\r\n\n\n\nb \n", "\x1c\u3000 x \x1f\u2029", "ﬁ é ①"]
    for blank_lines in (0, 1, 3):
        params = NormalizeParams(form=form, max_blank_lines=blank_lines)
        batch = pa.RecordBatch.from_pylist([{"id": str(i), "text": t} for i, t in enumerate(texts)])
        out = Normalize(params).process(batch)
        got = out.batch.column("text").to_pylist()
        want = [reference.normalize(t, form, blank_lines) for t in texts]
        assert got == want
        assert out.failed["empty_text"].tolist() == [not w for w in want]
