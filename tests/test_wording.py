"""Messages as a new user reads them: the names other tools use get a "did you mean", a file
given as a data set gets the mapping form, each problem is blamed where its value came from,
and numbers and counts read as words."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from tests.conftest import TINY_STUDY

SPACE = "space:\n  lr: {float: [1.0e-3, 1.0e-1], log: true}\n"
MLP = TINY_STUDY.split("space:")[0].replace("synthetic-classification, n_samples: 300",
                                            "synthetic-classification, n_samples: 120")


@pytest.mark.parametrize(("written", "meant"), [
    ("learning_rate", "lr"), ("lr_rate", "lr"), ("learnig_rate", "lr"), ("batch", "batch_size"),
    ("n_layers", "depth"), ("num_layers", "depth"), ("hidden", "width"),
    ("hidden_size", "width"), ("units", "width"), ("l2", "weight_decay"),
    ("l2_reg", "weight_decay"), ("drop_rate", "dropout"),
])
def test_names_other_tools_use_get_a_suggestion_not_a_list(cli, write_study, written: str,
                                                           meant: str) -> None:
    result = cli("validate", write_study(MLP + f"space:\n  {written}: {{choice: [1, 2]}}\n"),
                 "--no-data")
    assert result.exit_code == 2
    assert f"space.{written}: '{written}' is not a hyperparameter of the mlp model" \
        in result.output
    assert f"Did you mean '{meant}'?" in result.output and "Known:" not in result.output


def test_a_synonym_suggests_what_the_model_has(cli, write_study) -> None:
    text = MLP.replace("model: mlp", "model: cnn") + SPACE + "  n_layers: {int: [1, 2]}\n"
    result = cli("validate", write_study(text), "--no-data")
    assert "Did you mean 'conv_blocks'?" in result.output


def test_a_file_given_as_a_data_set_gets_the_mapping_form(cli, write_study) -> None:
    text = MLP.replace("dataset: {name: synthetic-classification, n_samples: 120, "
                       "n_features: 8, n_classes: 3}", "dataset: wine.csv") + SPACE
    result = cli("validate", write_study(text), "--no-data")
    assert result.exit_code == 2
    assert "unknown data set 'wine.csv'. A file is read through a data set kind: write " \
           "dataset: {name: csv, path: wine.csv}" in result.output


def test_yes_is_text_as_yaml_1_2_reads_it(cli, write_study) -> None:
    result = cli("validate", write_study(MLP + SPACE.replace("log: true", "log: yes")),
                 "--no-data")
    assert result.exit_code == 2
    assert "space.lr.log: must be a boolean, not 'yes'. Write true or false" in result.output


def test_each_problem_is_blamed_where_its_value_came_from(cli, write_study) -> None:
    path = write_study(MLP + SPACE)
    typo = cli("validate", path, "--no-data", "--set", "trainer.epoch=5")
    assert typo.exit_code == 2
    assert typo.output.strip() == \
        "error: --set: trainer.epoch: unknown key 'epoch'. Did you mean 'epochs'?"
    option = cli("search", path, "--n-trials", "0")
    assert option.exit_code == 2 and option.output.startswith("error: --n-trials: ")
    stored = write_study(MLP + SPACE + "storage: nowhere.txt\n", name="stored.yaml")
    from_file = cli("search", stored)
    assert from_file.exit_code == 2
    assert "storage: 'nowhere.txt' is neither a storage URL" in from_file.output
    assert "--storage" not in from_file.output.split(".")[0]


def test_validate_takes_the_overrides_search_takes(cli, write_study) -> None:
    path = write_study(MLP + SPACE)
    result = cli("validate", path, "--no-data", "--set", "trainer.epochs=7")
    assert result.exit_code == 0 and "7 epochs" in result.output


def test_list_names_each_study_metric(cli, write_study) -> None:
    assert cli("search", write_study(), "--n-trials", "2").exit_code == 0
    listing = cli("list").output
    assert "metric" in listing and "val_accuracy" in listing


def test_counts_read_as_numbers_and_words_agree() -> None:
    from tunecli.reports.summary import format_value

    assert format_value(26120.0) == "26,120" and format_value(1234567) == "1,234,567"
    assert format_value(0.98765) == "0.9877" and format_value(None) == "-"


def test_a_message_says_an_integer(cli, write_study) -> None:
    result = cli("validate", write_study(MLP.replace("epochs: 3", "epochs: three") + SPACE),
                 "--no-data")
    assert "trainer.epochs: must be an integer" in result.output


def _study(values: list[float]) -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    for i, value in enumerate(values):
        study.add_trial(create_trial(state=TrialState.COMPLETE, value=value,
                                     params={"lr": 0.001 * (i + 1)},
                                     distributions={"lr": FloatDistribution(0.0001, 0.1)}))
    return study


def test_importances_from_few_trials_are_called_rough(write_study) -> None:
    from tunecli import spec as spec_module
    from tunecli.reports import summary

    spec = spec_module.load(write_study(MLP + SPACE))
    few = summary.importances(_study([0.1, 0.5, 0.3, 0.9]), spec)
    assert few["values"] and few["note"].startswith("rough: from 4 completed trials only")
    flat = summary.importances(_study([0.5] * 5), spec)
    assert flat["values"] == {}
    assert flat["note"] == ("fanova could not weigh the parameters: the completed trials' "
                            "val_accuracy did not vary enough to tell them apart")


def test_one_fused_group_is_a_group(tmp_path: Path) -> None:
    from rich.console import Console

    from tunecli.reports import terminal

    console = Console(record=True, width=100)
    terminal._counts(console, {"study": "s", "metric": "m", "direction": "maximize",
                               "n_trials_budget": None, "epochs": {"budgeted": 0},
                               "counts": {"finished": 3, "complete": 3, "pruned": 0,
                                          "failed": 0, "lost": 0, "running": 0},
                               "fused": {"trials": 3, "groups": 1, "largest": 3}})
    assert "in 1 group of up to 3" in console.export_text()


def test_every_data_problem_is_said_in_one_run(cli, write_study, tmp_path: Path) -> None:
    """A missing cell and a text column, and many of them: one run names each column's
    problem with its lines, up to ten lines, then how many more."""
    rows = ["a,b,c,y"] + [f"{i},{'' if i == 3 else i},x{i},{i % 2}" for i in range(1, 30)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    text = MLP.replace("dataset: {name: synthetic-classification, n_samples: 120, "
                       "n_features: 8, n_classes: 3}", "dataset: {name: csv, path: d.csv}")
    result = cli("validate", write_study(text + SPACE))
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert any("line 4, column 'b': the cell '' is missing" in line for line in lines), lines
    assert any("lines 2, 3, 4, ... (29 in all), column 'c': 'x1' is not a number" in line
               for line in lines), lines
    many = ["," .join(["h"] * 1 + ["y"])] + [f"{i},{i % 2},extra" for i in range(40)]
    (tmp_path / "m.csv").write_text("\n".join(many) + "\n")
    counted = cli("validate", write_study(text.replace("d.csv", "m.csv") + SPACE, "m.yaml"))
    out = counted.output.strip().splitlines()
    assert len(out) == 11 and out[-1].endswith("and 30 more problems like these"), out


def test_trials_are_compared_at_their_best_and_their_last_epoch(cli, write_study) -> None:
    import json

    assert cli("search", write_study()).exit_code == 0
    data = json.loads(cli("report", "tiny", "--format", "json").output)
    shown = cli("report", "tiny").output
    assert "(val_accuracy at the best epoch, and at the last)" in shown
    from tunecli.reports.summary import format_value, ranked

    for row in ranked(data)[:3]:
        assert (f"{row['number']} {format_value(row['value'])} "
                f"{format_value(row['last_value'])} {row['epochs']} ") in " ".join(
                    shown.split()), shown
