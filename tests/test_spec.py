"""The study spec: YAML quirks handled, and every kind of bad input named with path and fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import TINY_STUDY
from tunecli import spec as spec_module
from tunecli.errors import SpecError


def load_text(tmp_path: Path, text: str) -> spec_module.StudySpec:
    path = tmp_path / "s.yaml"
    path.write_text(text, encoding="utf-8")
    return spec_module.load(path)


def test_shipped_studies_all_validate() -> None:
    studies = sorted(Path(__file__).parent.parent.glob("studies/*.yaml"))
    assert len(studies) >= 4
    for path in studies:
        spec = spec_module.load(path)
        assert spec.name and spec.space


def test_scientific_notation_is_a_number(tmp_path: Path) -> None:
    spec = load_text(tmp_path, TINY_STUDY.replace("[1.0e-3, 1.0e-1]", "[1e-3, 1e-1]"))
    assert spec.space["lr"].float_ == (1e-3, 1e-1)


def test_yes_no_on_off_are_strings_only_true_false_are_booleans() -> None:
    from tunecli.spec.yamlio import load_yaml_text

    assert load_yaml_text("a: [on, off, yes, no, true, False]", "x")["a"] == \
        ["on", "off", "yes", "no", True, False]
    assert load_yaml_text("on: 1", "x") == {"on": 1}


def test_fixed_values_and_conditionals(tmp_path: Path) -> None:
    spec = load_text(tmp_path, TINY_STUDY + "  batch_size: 64\n")
    assert spec.space["batch_size"].kind == "value"
    assert spec.space["momentum"].when == {"optimizer": "sgd"}


def test_stored_spec_round_trips(tmp_path: Path) -> None:
    spec = load_text(tmp_path, TINY_STUDY + "  batch_size: 64\n")
    again = spec_module.from_stored(json.loads(json.dumps(spec.stored())), "stored")
    assert again.stored() == spec.stored()
    assert again.base_dir == str(tmp_path)  # relative paths resolve from any folder


def test_json_schema_has_every_section() -> None:
    schema = spec_module.json_schema()
    assert {"name", "space", "budget", "sampler", "pruner", "trainer"} <= set(schema["properties"])
    assert "base_dir" not in schema["properties"]


def test_durations() -> None:
    assert spec_module.parse_duration("1h30m") == 5400
    assert spec_module.parse_duration("90s") == 90
    assert spec_module.parse_duration(12) == 12
    with pytest.raises(ValueError, match="is not a duration"):
        spec_module.parse_duration("soon")


def _mutate(old: str, new: str) -> str:
    assert old in TINY_STUDY, old
    return TINY_STUDY.replace(old, new)


# (study text, expected key path in the message, a word of the fix or message)
BAD_STUDIES = [
    pytest.param(_mutate("metric:", "metrc:"), "metrc", "Did you mean 'metric'", id="typo-top"),
    pytest.param(_mutate("log: true", "lgo: true"), "space.lr.lgo", "Did you mean 'log'",
                 id="typo-param-key"),
    pytest.param(_mutate("epochs: 3", "epochs: three"), "trainer.epochs", "three",
                 id="wrong-type"),
    pytest.param(_mutate("[8, 32]", "[32, 8]"), "space.width", "greater than high",
                 id="low-above-high"),
    pytest.param(_mutate("[1.0e-3, 1.0e-1]", "[0, 1.0e-1]"), "space.lr", "log scale",
                 id="log-zero"),
    pytest.param(TINY_STUDY.split("space:")[0] + "space: {}\n", "space", "empty",
                 id="empty-space"),
    pytest.param(_mutate("type: tpe", "type: tpee"), "sampler.type", "Did you mean 'tpe'",
                 id="unknown-sampler"),
    pytest.param(_mutate("type: median", "type: medain"), "pruner.type", "median",
                 id="unknown-pruner"),
    pytest.param(_mutate("name: synthetic-classification", "name: imagenet"),
                 "trainer.dataset.name", "unknown data set", id="unknown-dataset"),
    pytest.param(_mutate("model: mlp", "model: resnet"), "trainer.model", "unknown model",
                 id="unknown-model"),
    pytest.param(_mutate("when: {optimizer: sgd}", "when: {optimiser: sgd}"),
                 "space.momentum.when.optimiser", "Did you mean 'optimizer'",
                 id="condition-missing-param"),
    pytest.param(_mutate("when: {optimizer: sgd}", "when: {optimizer: lbfgs}"),
                 "space.momentum.when.optimizer", "not one of", id="condition-bad-value"),
    pytest.param(_mutate("n_trials: 6", "n_trials: 0"), "budget.n_trials", "greater than 0",
                 id="zero-budget"),
    pytest.param(_mutate("n_trials: 6", "n_trials: -3"), "budget.n_trials", "greater than 0",
                 id="negative-budget"),
    pytest.param(_mutate("budget: {n_trials: 6}", "budget: {timeout: soon}"),
                 "budget.timeout", "duration", id="bad-timeout"),
    pytest.param(_mutate("width:", "widht:"), "space.widht", "Did you mean 'width'",
                 id="unknown-hyperparameter"),
    pytest.param(_mutate("[adam, sgd]", "[adam, sgdd]"), "space.optimizer", "sgd",
                 id="unknown-optimizer"),
    pytest.param(_mutate("name: tiny", "name: 'a b/c'"), "name", "usable study name",
                 id="bad-name"),
    pytest.param(_mutate("{int: [8, 32]}", "{int: [8, 32], choice: [1, 2]}"), "space.width",
                 "exactly one", id="two-kinds"),
    pytest.param(_mutate("{int: [8, 32]}", "{int: [8, 32], log: true, step: 2}"),
                 "space.width", "step and log", id="step-with-log"),
    pytest.param(_mutate("direction: maximize", "direction: up"), "direction", "maximize",
                 id="bad-direction"),
    pytest.param(_mutate("epochs: 3", "epochs: 3\n  device: gpu"),
                 "trainer.device", "not a device", id="bad-device"),
    pytest.param(_mutate("metric: val_accuracy", "metric: accuracy"), "metric",
                 "Did you mean 'val_accuracy'", id="unknown-metric"),
    pytest.param(_mutate("epochs: 3", "epochs: 3\n  data_shares: [0.25, 1.5]"),
                 "trainer.data_shares[1]", "less than or equal to 1", id="data-share-above-1"),
]


@pytest.mark.parametrize(("text", "path", "words"), BAD_STUDIES)
def test_bad_study_gives_one_line_with_path_and_fix(tmp_path: Path, text: str, path: str,
                                                     words: str) -> None:
    with pytest.raises(SpecError) as info:
        load_text(tmp_path, text)
    line = info.value.line()
    assert "\n" not in line
    assert str(tmp_path / "s.yaml") in line
    assert f": {path}:" in line, line
    assert words in line, line


@pytest.mark.parametrize(("text", "words"), [
    pytest.param("", "empty", id="empty-file"),
    pytest.param("- a\n- b\n", "mapping", id="not-a-mapping"),
    pytest.param("name: a\nname: b\n", "written twice", id="duplicate-key"),
    pytest.param("name: a\nspace:\n\tlr: 1\n", "tab", id="tabs"),
    pytest.param("name: !!python/object/apply:os.system ['echo hi']\n", "not allowed",
                 id="python-tag"),
    pytest.param("name: [unclosed\n", "s.yaml:", id="bad-syntax"),
])
def test_malformed_yaml(tmp_path: Path, text: str, words: str) -> None:
    with pytest.raises(SpecError) as info:
        load_text(tmp_path, text)
    assert words in info.value.line()
    assert "\n" not in info.value.line()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="file not found"):
        spec_module.load(tmp_path / "nope.yaml")


def test_objective_diff_names_the_change(tmp_path: Path) -> None:
    a = load_text(tmp_path, TINY_STUDY).stored()
    b = load_text(tmp_path, _mutate("[8, 32]", "[8, 64]")).stored()
    c = load_text(tmp_path, _mutate("n_trials: 6", "n_trials: 60")).stored()
    assert spec_module.objective_diff(a, b) == ["space.width.int: [8, 32] -> [8, 64]"]
    assert spec_module.objective_diff(a, c) == []  # a bigger budget is the same study
