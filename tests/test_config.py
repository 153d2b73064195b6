"""Bad configs fail before any work, naming the file, the key and the reason."""

import pytest

from refinery.pipeline.config import ConfigError, load_job, validate


def write(tmp_path, text):
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path


GOOD_INPUT = "input: {paths: ['%s/*.jsonl'], format: jsonl}\n"


def test_valid_config_resolves_files_and_names(tmp_path, spine_data):
    path = write(
        tmp_path,
        GOOD_INPUT % spine_data
        + "stages:\n  - {stage: length, min_words: 3}\n  - {stage: length, annotate_only: true}\n",
    )
    job = load_job(path)
    assert len(job.files) == 3
    assert [s.name for s in job.stages] == ["length", "length_2"]
    assert job.stages[1].annotate_only


@pytest.mark.parametrize(
    "body, key, reason",
    [
        ("stages: [{stage: length}]\nbogus: 1\n", "bogus", "unknown key"),
        ("stages: [{stage: nosuch}]\n", "stages[0].stage", "unknown stage"),
        ("stages: [{stage: length, min_words: many}]\n", "stages[0].min_words", "integer"),
        ("stages: [{stage: length, colour: red}]\n", "stages[0].colour", "unknown key"),
        ("stages: [{stage: length, min_chars: 10, max_chars: 5}]\n", "stages[0]", "max_chars"),
        ("stages: [{stage: length}]\nrunner: yarn\n", "runner", "local"),
        ("stages: [{stage: length}]\nworkers: 0\n", "workers", "greater than 0"),
        ("stages: [{stage: length, route: 'a b'}]\n", "stages[0].route", "expected a name"),
    ],
)
def test_bad_config_names_file_key_reason(tmp_path, spine_data, body, key, reason):
    path = write(tmp_path, GOOD_INPUT % spine_data + body)
    with pytest.raises(ConfigError) as err:
        load_job(path)
    assert err.value.file == str(path)
    assert err.value.key == key
    assert reason in err.value.reason
    assert str(path) in str(err.value)


def test_missing_input_is_a_config_error(tmp_path):
    path = write(tmp_path, "input: {paths: ['/nonexistent/*.jsonl'], format: jsonl}\nstages: [{stage: length}]\n")
    with pytest.raises(ConfigError) as err:
        load_job(path)
    assert err.value.key == "input.paths"


def test_web_input_needs_extract_first(spine_data):
    with pytest.raises(ConfigError) as err:
        validate(
            {"input": {"paths": [str(spine_data / "*.warc.gz")], "format": "warc"}, "stages": [{"stage": "length"}]}
        )
    assert err.value.key == "stages[0]"


def test_yaml_syntax_error(tmp_path):
    path = write(tmp_path, "input: [unclosed\n")
    with pytest.raises(ConfigError) as err:
        load_job(path)
    assert err.value.key == "(syntax)"


def test_cli_reports_config_error_before_work(tmp_path, spine_data, capsys):
    from refinery.pipeline.cli import main

    path = write(tmp_path, GOOD_INPUT % spine_data + "stages: [{stage: nosuch}]\n")
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--runner", "local"]) == 2
    assert "stages[0].stage" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
