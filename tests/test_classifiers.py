"""fastText training reliability, prediction, evaluation and the classify stage."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from refinery.classifiers import corpora, generalization, quality_score, synthetic
from refinery.classifiers.data import read_labeled
from refinery.classifiers.fasttext_model import (
    FastTextClassifier,
    TrainParams,
    arrow_patterns,
    prepare,
    prepare_column,
    train,
)
from refinery.classifiers.metrics import roc_auc
from refinery.classifiers.ngram import NgramLM, lm_tokens
from refinery.classifiers.perplexity import perplexities
from refinery.classifiers.quality_score import QualityScore, line_punctuation
from refinery.pipeline.cli import main as cli_main
from refinery.pipeline.stage import run_map_stage
from refinery.stages.classify import Classify, ClassifyParams

ROOT = Path(__file__).parents[1]
DATA = Path(__file__).parent / "data" / "classifiers"


@pytest.fixture(scope="module")
def examples():
    rows, skipped = read_labeled(DATA / "labeled.jsonl")
    assert skipped == {"invalid_json": 1, "missing_text": 1}
    return rows


def test_training_is_reliable_on_small_data_repeated(examples, tmp_path):
    # The binding's C++ core leaves part of the input matrix uninitialised with fewer than 10
    # threads; after earlier allocations that memory is garbage and training hit "Encountered NaN"
    # in about half of repeated in-process runs. Repeated runs here must all train and agree.
    params = TrainParams(epoch=15, lr=0.1, quantize=False, min_count=1)
    texts = [t for t, _ in examples]
    gold = [label for _, label in examples]
    for i in range(12):
        model = train(examples, tmp_path / f"m{i}.bin", params)
        assert (np.asarray(model.predict(texts)) == np.asarray(gold)).mean() > 0.9


def test_quantized_model_predicts_batches(examples, tmp_path):
    model = train(examples, tmp_path / "m.ftz", TrainParams(epoch=10))
    assert model.path.stat().st_size < 1_000_000
    probs = model.predict_proba([t for t, _ in examples] + ["", "line one\nline two"])
    assert probs.shape == (len(examples) + 2, 2)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=0.02)
    hq = probs[: len(examples), model.labels.index("hq")]
    assert roc_auc(hq, [label == "hq" for _, label in examples]) > 0.95


def _fasttext_tokens(lines: list[str]) -> list[str]:
    """Each line's tokens as fastText reads them (it splits on these bytes and nothing else),
    single-spaced; one regex pass over all lines (none holds a newline)."""
    joined = re.sub("[ \t\r\v\f\0]+", " ", "\n".join(lines))
    return [line.strip() for line in joined.split("\n")]


def test_arrow_preparation_gives_fasttext_the_same_tokens_for_every_code_point_in_use():
    # Every code point of the planes in use (BMP, SMP, SIP, TIP, the tags and variation
    # selectors), every 97th elsewhere (unassigned and private use).
    in_use = (range(0xD800), range(0xE000, 0x323B0), range(0xE0000, 0xE01F0))
    codepoints = sorted({cp for r in in_use for cp in r} | set(range(0x323B0, 0x110000, 97)))
    docs = [
        "".join(f"x{chr(cp)}Y{chr(cp)}{chr(cp)} 1{chr(cp)}_" for cp in codepoints[i : i + 8])
        for i in range(0, len(codepoints), 8)
    ]
    docs += ["ΣΟΦΟΣ ΟΔΟΣ. Σ", "İI\u0130i", "tab\tcr\rvt\vff\fnl\n\nend\0", "\u00a0nbsp\u2003em\u3000\x1c\x85", ""]
    docs += ["See HTTPS://x.co/a?b=1,\nor www.txt2win.co.uk\tnow", "http://a\u00a0b https://\u4e2d.cn/页 end"]
    column = pa.array(docs + [None], pa.large_string())
    _, odd = arrow_patterns()
    # Once as they are, once without the characters sent to Python: every other character takes
    # the Arrow path at least once.
    for texts in (column, pc.replace_substring_regex(column, odd, "")):
        lines = prepare_column(texts, 40)
        assert len(lines) == len(texts) and lines[-1] == ""
        expected = [prepare(text, 40) for text in texts.to_pylist()[:-1]]
        got, want = _fasttext_tokens(lines[:-1]), _fasttext_tokens(expected)
        assert got == want, next((g, w) for g, w in zip(got, want) if g != w)


def test_a_web_address_is_one_word():
    assert prepare("Visit https://github.com/celery/celery/issues/ or WWW.x.co.uk!") == "visit url or url"
    assert prepare("the url\nhttp://a.b") == "the url </s> url"


def test_arrow_and_python_preparation_score_identically(examples):
    model = FastTextClassifier(Path(__file__).parents[1] / "models" / "classifiers" / "quality.ftz", max_chars=500)
    texts = [t for t, _ in examples] + [
        "",
        "Line one\nline two\u00a0— “quoted”",
        (DATA / "2005-GWBush.txt").read_text(),
    ]
    assert np.array_equal(model.predict_proba(texts), model.predict_proba(pa.array(texts, pa.large_string())))


def test_cli_train_and_eval(tmp_path, capsys):
    out = tmp_path / "cli.ftz"
    assert (
        cli_main(
            ["classifiers", "train", "--input", str(DATA / "labeled.jsonl"), "--output", str(out), "--epoch", "10"]
        )
        == 0
    )
    trained = json.loads(capsys.readouterr().out)
    assert sorted(trained["labels"]) == ["hq", "lq"] and trained["skipped"]["invalid_json"] == 1
    assert (
        cli_main(
            ["classifiers", "eval", "--model", str(out), "--input", str(DATA / "labeled.jsonl"), "--positive", "hq"]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["accuracy"] > 0.9 and report["auc"] > 0.9


def test_roc_auc_known_values():
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert roc_auc([1, 1, 1], [1, 0, 1]) == pytest.approx(0.5)


PERMISSIVE = ("public domain", "Apache-2.0", "MIT", "CC BY 4.0", "CC0-1.0", "BSD-2-Clause", "PSF-2.0", "derived by")
RESTRICTED = ("non-commercial", "no license")


def test_shipped_models_and_cards():
    root = Path(__file__).parents[1] / "models" / "classifiers"
    # fastText alone tells prose from junk in domain at 0.87-0.89 (quality_score, below, is the gate;
    # it reached 0.90 only while four Genesis translations were mis-decoded into U+FFFD runs).
    for name, positive, accuracy in (("quality", "hq", 0.85), ("safety", "spam", 0.9)):
        card = json.loads((root / f"{name}.ftz.json").read_text())
        assert card["positive_label"] == positive and card["heldout"]["accuracy"] > accuracy
        for source in card["sources"].values():
            assert source["license"].startswith(PERMISSIVE), source
            assert not any(word in source["license"] for word in RESTRICTED), source
        assert set(card["heldout"]["by_source"]) == set(card["sources"])
        assert positive in FastTextClassifier(root / f"{name}.ftz").labels
        # The out-of-domain figures come first, and no held-out domain is scored worse than chance.
        assert list(card)[:3] == ["model", "task", "leave_one_domain_out"]
        assert all(d["n"] > 0 and d["auc"] > 0.5 for d in card["leave_one_domain_out"]["by_domain"].values())
    safety = json.loads((root / "safety.ftz.json").read_text())
    # Edited prose (and code) the safety model never saw is not taken for spam at the default
    # threshold: at most 2% of any domain. Technical documentation is the closest (0.7-1.7% over
    # five builds, BENCHMARKS.md): its doctests look like text-message short codes to a model that
    # has seen no code, hence the standard library's code among the `ham`.
    flagged = safety["leave_one_domain_out"]["share_above_0.5"]
    assert {"technical documentation", "source code"} <= set(flagged) and max(flagged.values()) <= 0.02
    assert "Almeida" in safety["attribution"] and "CC BY 4.0" in safety["attribution"]
    # quality_score holds on every domain it never saw, and its card loads.
    card = json.loads((root / "perplexity.npz.json").read_text())
    assert list(card)[:3] == ["model", "task", "leave_one_domain_out"]
    held_out = card["leave_one_domain_out"]
    assert min(d["auc_quality_score"] for d in held_out["by_domain"].values()) >= 0.9
    # Its threshold, fitted without the domain, keeps at least 95% of the prose of every unseen domain.
    assert min(d["share_kept"] for d in held_out["by_domain"].values() if d["label"] == "hq") >= 0.95
    assert min(d["auc"] for d in held_out["by_language"].values()) > 0.5
    QualityScore.from_card(card["quality_score"])


def test_derived_negatives_are_deterministic_and_shaped():
    speech = (DATA / "2005-GWBush.txt").read_text()[:4000]
    source_words = set(synthetic.words(speech))
    for kind, derive in synthetic.DERIVATIONS.items():
        first = derive(speech, synthetic.rng_for("state_union/2005-GWBush", kind))
        assert first == derive(speech, synthetic.rng_for("state_union/2005-GWBush", kind))
        assert first != derive(speech, synthetic.rng_for("state_union/2006-GWBush", kind))
        assert {w.lower() for w in synthetic.words(first)} <= {w.lower() for w in source_words}
    salad = synthetic.word_salad(speech, synthetic.rng_for("x", "salad"))
    assert sorted(salad.split()) != salad.split() and len(salad.split()) >= 60
    menu = synthetic.menu_lines(speech, synthetic.rng_for("x", "menu")).split("\n")
    assert len(menu) >= 10 and all(1 <= len(line.split()) <= 3 for line in menu)
    repeated = synthetic.repeated_lines(speech, synthetic.rng_for("x", "repeat")).split("\n")
    assert len(set(repeated)) <= 3 and len(repeated) >= 5


def test_shipped_quality_model_separates_prose_from_derived_junk():
    model = FastTextClassifier(Path(__file__).parents[1] / "models" / "classifiers" / "quality.ftz")
    speech = (DATA / "2005-GWBush.txt").read_text()
    paragraphs = [p for p in speech.split("\n\n") if len(p) > 400][:10]
    assert len(paragraphs) == 10
    junk = [
        derive(p, synthetic.rng_for(str(i), kind))
        for i, p in enumerate(paragraphs)
        for kind, derive in synthetic.DERIVATIONS.items()
    ]
    hq = model.labels.index("hq")
    assert (model.predict_proba(paragraphs)[:, hq] > 0.5).mean() >= 0.9
    assert (model.predict_proba(junk)[:, hq] < 0.5).mean() >= 0.8


def _batch(texts, urls, langs=None):
    data = {"id": [str(i) for i in range(len(texts))], "text": pa.array(texts, pa.large_string()), "url": urls}
    if langs is not None:
        data["lang"] = langs
    return pa.RecordBatch.from_pydict(data)


def test_classify_stage_scores_and_rules():
    speech = (DATA / "2005-GWBush.txt").read_text()[:3000]
    texts = [
        speech,
        "WINNER!! claim ur free prize now txt WIN to 80086 call 09061701461",
        speech,
        None,
        "他妈的屄" + "操你妈" * 3,
    ]
    urls = [None, None, "http://forum.stormfront.org/t/1", None, None]
    stage = Classify(ClassifyParams())
    stage.setup()
    out, stats = run_map_stage(stage, _batch(texts, urls, ["en", "en", "en", "en", "zh"]))
    assert stats.docs_in == 5 and stats.errors_by_kind == {"missing_text": 1}
    assert stats.dropped_by_reason["blocked_domain"] == 1
    assert stats.failed_by_rule.get("safety_spam>0.5") == 1
    assert stats.dropped_by_reason.get("badwords") == 1
    assert out.num_rows == 1 and out.column("quality_hq")[0].as_py() > 0.5
    assert "quality_hq" in stats.histograms and sum(stats.histograms["quality_hq"]["counts"]) == 4
    assert stats.docs_in == stats.docs_kept + stats.docs_dropped + stats.docs_errored


def test_classify_annotate_only_keeps_everything():
    stage = Classify(ClassifyParams(), annotate_only=True)
    stage.setup()
    out, stats = run_map_stage(
        stage, _batch(["hi", "Fellow citizens of the Senate and of the House."], [None, "https://kkk.com"])
    )
    assert out.num_rows == 2 and out.column("blocked_domain").to_pylist() == [None, "agressif"]
    assert out.column("classify_reason").to_pylist()[1] == "blocked_domain"


def test_classify_check_params_reports_bad_config(tmp_path):
    bad_label = ClassifyParams.model_validate(
        {"classifiers": {"quality": {"path": "models/classifiers/quality.ftz", "min": {"good": 0.5}}}}
    )
    with pytest.raises(ValueError, match="no label 'good'"):
        Classify.check_params(bad_label, tmp_path)
    missing = ClassifyParams.model_validate({"classifiers": {"q": {"path": "nope.ftz"}}})
    with pytest.raises(ValueError, match="no such file"):
        Classify.check_params(missing, tmp_path)
    with pytest.raises(ValueError):
        ClassifyParams.model_validate({"classifiers": {"q": {"path": "x", "max": {"a": 2}}}})


def test_genesis_translations_are_decoded_as_written():
    text = {name: next(corpora.genesis(DATA, [name], parts=1))[1] for name in corpora.GENESIS_TRANSLATIONS}
    assert not any("\ufffd" in t or "&szlig;" in t or "\u255c" in t or "<" in t for t in text.values())
    assert "Gott sah, daß das Licht" in text["german"] and "från mörkret" in text["swedish"]
    assert "\n\n2. Kapitel\n\nSo wurden vollendet" in text["german"] and "namnet Eva, ty hon" in text["swedish"]
    assert "”Varde ljus”" in text["swedish"] and "näki" in text["finnish"] and "lumière" in text["french"]


def test_chunks_leave_no_fragment_of_a_document_on_its_own():
    body = "\n\n".join(["A paragraph of an article that runs on for a while. " * 4] * 4 + ["Disclaimer"])
    parts = corpora.chunks(body, 300)
    assert len(parts) == 2 and parts[-1].endswith("\nDisclaimer") and all(len(p) >= 150 for p in parts)
    assert corpora.chunks("short", 300) == ["short"]


def test_standard_library_code_is_read_without_its_docstrings():
    import abc

    code = dict(corpora.python_source_code())["python/abc"]
    assert "class ABCMeta(type):" in code and "def register(cls, subclass):" in code
    assert abc.__doc__.splitlines()[0] not in code and abc.ABCMeta.register.__doc__.split(".")[0] not in code


def test_readme_prose_keeps_list_items_on_their_lines_and_drops_the_changelog():
    spec = importlib.util.spec_from_file_location("fetch", ROOT / "scripts" / "fetch_classifier_corpora.py")
    fetch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fetch)  # type: ignore[union-attr]
    readme = (
        "# tool\n\nThe tool reads every page of a site and writes\nits text in one file per page.\n\n"
        "It gives you, in one call, what you would otherwise write:\n* retries with a backoff of its own\n"
        "* a timeout for every single request it sends\n\n```python\nimport tool\n```\n\n"
        "Changelog\n=========\n\n* Fix the retry loop by @someone in #101 and more words here\n"
    )
    text = fetch.readable_text(readme)
    assert "writes its text in one file per page." in text and "import tool" not in text
    assert "write:\n* retries with a backoff of its own\n* a timeout" in text
    assert "#101" not in text and "Changelog" not in text


def test_lm_tokens_read_unspaced_scripts_by_character():
    assert lm_tokens("Hello, 世界 abc日本です.") == ["hello", ",", "世", "界", "abc", "日", "本", "で", "す", "."]
    assert lm_tokens("한국어 문장") == ["한국어", "문장"]  # Korean is written with spaces


def test_batched_perplexity_is_each_documents_own():
    lm = NgramLM.load(ROOT / "models" / "classifiers" / "perplexity.npz", cache_weight=0.0)
    speech = (DATA / "2005-GWBush.txt").read_text()
    texts = [speech[:2000], "", "天气很好。我们出去了。", "the", speech[2000:2600], "!!"]
    alone = [np.exp(lm.nll(lm_tokens(t), [])) if lm_tokens(t) else np.nan for t in texts]
    np.testing.assert_allclose(perplexities(lm, texts), alone, rtol=1e-12)
    assert np.isnan(perplexities(lm, texts)[1]) and perplexities(lm, []).shape == (0,)


def test_perplexity_and_quality_score_tell_prose_from_its_own_words_shuffled():
    speech = (DATA / "2005-GWBush.txt").read_text()
    paragraphs = [p for p in speech.split("\n\n") if len(p) > 400][:8]
    salad = synthetic.DERIVATIONS["shuffled word salad"]
    shuffled = [salad(p, synthetic.rng_for(str(i), "salad")) for i, p in enumerate(paragraphs)]
    config = {"perplexity": {"min_score": "card"}, "domains": None, "words": None}
    params = Classify.check_params(ClassifyParams.model_validate(config), ROOT)
    card = json.loads((ROOT / "models" / "classifiers" / "perplexity.npz.json").read_text())["quality_score"]
    assert params.perplexity.min_score == card["threshold"] and 0 < card["threshold"] < 1
    stage = Classify(params, annotate_only=True)
    stage.setup()
    out, stats = run_map_stage(stage, _batch(paragraphs + shuffled + [" \n ", None], [None] * 18))
    ppl = out.column("perplexity").to_pylist()
    assert all(ppl[i] < ppl[8 + i] for i in range(8))  # the same words, in order, are more predictable
    assert len(ppl) == 17 and ppl[16] is None  # no words; the row without text is an error
    assert stats.errors_by_kind == {"missing_text": 1}
    score = out.column("quality_score").to_pylist()
    assert sum(s >= card["threshold"] for s in score[:8]) >= 7
    assert sum(s < card["threshold"] for s in score[8:16]) >= 6
    reason = f"quality_score<{card['threshold']:g}"
    assert stats.failed_by_rule.get(reason, 0) >= 6 and "perplexity" in stats.histograms


def test_quality_score_fitted_fully_nested_still_tells_an_unseen_domain(examples):
    # Five domains made of the labeled rows; the regression for "a" is fitted on "b", "e", "c" and "d"
    # as scored by models that saw neither "a" nor the domain scored.
    rows = []
    for i, (text, label) in enumerate(examples):
        domain = "abe"[i % 3] if label == "hq" else "cd"[i % 2]
        split = "test" if i % 5 == 0 else "tune" if i % 5 == 1 else "train"
        rows.append(generalization.Example(text, label, "rows", domain, "en", split, domain))
    params = TrainParams(epoch=50, lr=0.5, quantize=False, min_count=1)
    held_out = quality_score.fully_nested(rows, "hq", params, "a")
    assert held_out["auc_quality_score"] > 0.8 and 0.5 <= held_out["share_kept"] <= 1.0


def test_line_punctuation_reads_sentence_and_clause_ends_in_any_script():
    texts = ["It rained. We stayed in.\nThe end!", "Home\nAbout us\nContact", "天气很好。\n我们出去了"]
    texts += ["  \n\n", "«Oui.»  \r\n", "home\nabout"]
    texts += ["A paragraph wrapped\nat seventy characters\r\n  goes on.\nNext one."]  # hard-wrapped: 2 lines
    texts += ["Whereas all are born free,\nWhereas rights must be protected;\nProvided that:\nHome", "鑑於人權，\n序言"]
    assert line_punctuation(texts).tolist() == [1.0, 0.0, 0.5, 0.0, 1.0, 0.0, 1.0, 0.75, 0.5]


def test_quality_score_regression_separates_what_it_was_fitted_on_and_round_trips_its_card():
    rng = np.random.default_rng(0)
    gold = rng.random(400) < 0.5
    x = rng.normal(size=(400, 3)) + np.where(gold[:, None], [1.0, -1.0, 0.0], [-1.0, 1.0, 0.0])
    score = QualityScore.fit(x, gold)
    assert roc_auc(score(x), gold) > 0.9
    assert score.coefficients[0] > 0 > score.coefficients[1] and abs(score.coefficients[2]) < 0.5
    again = QualityScore.from_card(json.loads(json.dumps(score.card())))
    assert np.allclose(again(x), score(x))
    with pytest.raises(ValueError, match="features"):
        QualityScore.from_card({**score.card(), "features": ["logit_p_hq"]})


def test_perplexity_config_errors(tmp_path):
    wrong = ClassifyParams.model_validate({"perplexity": {"score_label": "quality_good"}})
    with pytest.raises(ValueError, match="no classifier column 'quality_good'"):
        Classify.check_params(wrong, ROOT)
    missing = ClassifyParams.model_validate({"perplexity": {"path": "nope.npz"}})
    with pytest.raises(ValueError, match="perplexity.path: no such file"):
        Classify.check_params(missing, tmp_path)
    with pytest.raises(ValueError, match="less than or equal to 1"):
        ClassifyParams.model_validate({"perplexity": {"min_score": 3.0}})
    model = tmp_path / "perplexity.npz"
    model.write_bytes((ROOT / "models" / "classifiers" / "perplexity.npz").read_bytes())
    with pytest.raises(ValueError, match="the model card"):
        Classify.check_params(ClassifyParams.model_validate({"perplexity": {"path": str(model)}}), ROOT)
    with pytest.raises(ValueError, match="needs a score_label"):
        Classify.check_params(
            ClassifyParams.model_validate({"perplexity": {"score_label": None, "min_score": 1.0}}), ROOT
        )
