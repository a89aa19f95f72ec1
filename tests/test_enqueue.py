"""Known configurations first: search --enqueue FILE."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from tests.conftest import TINY_STUDY, stored

CONFIGS = """\
- {lr: 0.01, width: 16, optimizer: adam}
- {lr: 0.05, width: 24, optimizer: sgd, momentum: 0.8}
"""


def test_enqueued_configurations_run_first_and_once(cli, write_study, tmp_path: Path) -> None:
    (tmp_path / "known.yaml").write_text(CONFIGS)
    result = cli("search", write_study(), "--n-trials", "3", "--enqueue", "known.yaml")
    assert result.exit_code == 0, result.output
    assert "queued 2 of 2 configurations" in result.output
    trials = stored()
    assert trials[0].params == {"lr": 0.01, "width": 16, "optimizer": "adam"}
    assert trials[1].params == {"lr": 0.05, "width": 24, "optimizer": "sgd", "momentum": 0.8}
    assert trials[0].user_attrs["enqueued"] and "enqueued" not in trials[2].user_attrs
    again = cli("search", write_study(), "--n-trials", "4", "--enqueue", "known.yaml")
    assert "queued 0 of 2" in again.output and len(stored()) == 4


@pytest.mark.parametrize(("text", "words"), [
    ("{lr: 5.0}", "lr: 5.0 is outside the space. Give in [0.001, 0.1]"),
    ("- {lrr: 0.01}", "[0].lrr: 'lrr' is not a searched parameter"),
    ("- {optimizer: adamw}", "outside the space. Give one of ['adam', 'sgd']"),
    ("- {width: 12.5}", "Give a whole number"),
    ("- 3", "must be a mapping"),
])
def test_a_bad_configuration_stores_nothing(cli, write_study, tmp_path: Path, text: str,
                                            words: str) -> None:
    (tmp_path / "known.yaml").write_text(text)
    result = cli("search", write_study(), "--enqueue", "known.yaml")
    assert result.exit_code == 2, result.output
    assert words in result.output and "known.yaml" in result.output
    db = tmp_path / "tunecli.db"
    assert not db.exists() or not optuna.get_all_study_names(f"sqlite:///{db}")


def test_a_new_model_based_study_starts_from_the_defaults_then_the_centre(cli,
                                                                        write_study) -> None:
    assert cli("search", write_study(), "--n-trials", "3").exit_code == 0
    first, second, third = stored()
    assert first.user_attrs["defaults"] and first.params == {  # the trainer's, moved inside
        "lr": pytest.approx(1e-3), "width": 32, "optimizer": "adam"}
    assert second.user_attrs["center"] and second.params == {
        "lr": pytest.approx(0.01), "width": 20, "optimizer": "adam"}
    assert not {"center", "defaults"} & set(third.user_attrs)
    again = cli("search", write_study(), "--n-trials", "4")  # continuing: no second start
    assert again.exit_code == 0
    assert [sorted({"center", "defaults"} & set(t.user_attrs)) for t in stored()] == [
        ["defaults"], ["center"], [], []]


@pytest.mark.parametrize(("sets", "marks"), [
    ([], ["defaults", "center"]),
    (["--set", "sampler.type=random"], []),
    (["--set", "sampler.center_first=false"], ["defaults"]),
    (["--set", "sampler.defaults_first=false"], ["center"]),
    (["--set", "sampler.type=random", "--set", "sampler.center_first=true"], ["center"]),
    (["--set", "sampler={type: random, defaults_first: true}"], ["defaults"]),
])
def test_starting_points_follow_the_sampler_and_the_keys(cli, write_study, sets: list[str],
                                                        marks: list[str]) -> None:
    assert cli("search", write_study(), "--n-trials", "2", *sets).exit_code == 0
    found = [mark for t in stored() for mark in ("defaults", "center") if t.user_attrs.get(mark)]
    assert found == marks


def test_known_configurations_replace_the_centre(cli, write_study, tmp_path: Path) -> None:
    (tmp_path / "known.yaml").write_text(CONFIGS)
    assert cli("search", write_study(), "--n-trials", "3", "--enqueue", "known.yaml"
               ).exit_code == 0
    assert not any(t.user_attrs.get("center") or t.user_attrs.get("defaults")
                   for t in stored())


@pytest.mark.parametrize("key", ["center_first", "defaults_first"])
def test_a_grid_search_refuses_a_starting_point(cli, write_study, key: str) -> None:
    result = cli("search", write_study(), "--set", f"sampler={{type: grid, {key}: true}}")
    assert result.exit_code == 2
    assert f"sampler.{key}" in result.output and "Traceback" not in result.output


def test_from_starts_with_the_other_studys_best(cli, write_study, tmp_path: Path) -> None:
    assert cli("search", write_study()).exit_code == 0
    first = sorted((t for t in stored() if t.state.name == "COMPLETE"),
                   key=lambda t: -t.value)  # type: ignore[operator]
    warm = cli("search", write_study(), "--name", "warm", "--from", "tiny", "--from-top", "2",
               "--n-trials", "3")
    assert warm.exit_code == 0, warm.output
    assert "queued 2 of 2 configurations from study 'tiny'" in warm.output
    trials = stored(name="warm")
    assert [t.params for t in trials[:2]] == [t.params for t in first[:2]]
    assert all(t.user_attrs.get("enqueued") for t in trials[:2])
    assert not any(t.user_attrs.get("center") or t.user_attrs.get("defaults")
                   for t in trials)  # known configurations first


def test_from_keeps_only_what_fits_the_new_space(cli, write_study, tmp_path: Path) -> None:
    assert cli("search", write_study()).exit_code == 0
    narrow = TINY_STUDY.replace("name: tiny", "name: narrow").replace(
        "width: {int: [8, 32]}", "width: {int: [40, 64]}")
    result = cli("search", write_study(narrow), "--from", "tiny", "--from-top", "1",
                 "--n-trials", "1")
    assert result.exit_code == 0, result.output
    best = max((t for t in stored() if t.value is not None), key=lambda t: t.value)
    (trial,) = stored(name="narrow")
    assert trial.params["lr"] == best.params["lr"]  # kept: inside the new space
    assert 40 <= trial.params["width"] <= 64  # the old width is outside: sampled afresh


@pytest.mark.parametrize(("args", "words"), [
    (["--from", "nosuch"], "no study 'nosuch'"),
    (["--from", "tiny"], "--from names this study ('tiny')"),
])
def test_from_bad_input_stores_nothing(cli, write_study, args: list[str], words: str) -> None:
    result = cli("search", write_study(), *args)
    assert result.exit_code == 2 and words in result.output, result.output
    assert "Traceback" not in result.output
