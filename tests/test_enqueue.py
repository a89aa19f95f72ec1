"""Known configurations first: search --enqueue FILE."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from tests.conftest import stored

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


@pytest.mark.parametrize("text,words", [
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


def test_a_new_model_based_study_tries_the_centre_of_the_space_first(cli, write_study) -> None:
    assert cli("search", write_study(), "--n-trials", "2").exit_code == 0
    first, second = stored()
    assert first.user_attrs["center"] and "center" not in second.user_attrs
    assert first.params == {"lr": pytest.approx(0.01), "width": 20, "optimizer": "adam"}
    again = cli("search", write_study(), "--n-trials", "3")  # continuing: no second centre
    assert again.exit_code == 0 and [t.user_attrs.get("center") for t in stored()] == [
        True, None, None]


@pytest.mark.parametrize("sets,centre", [
    (["--set", "sampler.type=random"], False),
    (["--set", "sampler.center_first=false"], False),
    (["--set", "sampler.type=random", "--set", "sampler.center_first=true"], True),
])
def test_center_first_follows_the_sampler_and_the_key(cli, write_study, sets: list[str],
                                                      centre: bool) -> None:
    assert cli("search", write_study(), "--n-trials", "1", *sets).exit_code == 0
    assert bool(stored()[0].user_attrs.get("center")) is centre


def test_known_configurations_replace_the_centre(cli, write_study, tmp_path: Path) -> None:
    (tmp_path / "known.yaml").write_text(CONFIGS)
    assert cli("search", write_study(), "--n-trials", "3", "--enqueue", "known.yaml"
               ).exit_code == 0
    assert not any(t.user_attrs.get("center") for t in stored())


def test_a_grid_search_refuses_center_first(cli, write_study) -> None:
    result = cli("search", write_study(), "--set", "sampler={type: grid, center_first: true}")
    assert result.exit_code == 2
    assert "sampler.center_first" in result.output and "Traceback" not in result.output
