"""`tunecli train`: one configuration retrained on training + validation data, tested once."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState, create_trial

from tests.conftest import TINY_STUDY, stored
from tunecli.trainer.final import load_model

REGRESSION = """\
name: reg
metric: val_rmse
direction: minimize
budget: {n_trials: 3}
sampler: {type: random, seed: 0}
pruner: {type: none}
trainer:
  dataset: {name: synthetic-regression, n_samples: 300, n_features: 5}
  epochs: 4
space:
  lr: {float: [1.0e-3, 1.0e-2], log: true}
"""


def test_train_a_study_best_trial_by_name(cli, write_study, tmp_path: Path) -> None:
    assert cli("search", write_study()).exit_code == 0
    best = max((t for t in stored() if t.state.name == "COMPLETE"), key=lambda t: t.value)
    result = cli("train", "tiny")
    assert result.exit_code == 0, result.output
    assert f"study 'tiny' trial #{best.number}" in result.output
    info = json.loads((tmp_path / "models" / "tiny.json").read_text())
    assert info["trial"] == best.number and info["epochs"] == best.user_attrs["best_epoch"]
    assert info["params"] == best.params
    assert set(info["test_metrics"]) == {"test_loss", "test_accuracy", "test_precision",
                                         "test_recall", "test_f1"}
    assert 0 <= info["test_metrics"]["test_accuracy"] <= 1
    model = load_model(tmp_path / "models" / "tiny.json")
    assert isinstance(model, torch.nn.Module) and not model.training


def test_train_a_chosen_trial_with_epochs_and_out(cli, write_study, tmp_path: Path) -> None:
    assert cli("search", write_study()).exit_code == 0
    result = cli("train", "tiny", "--trial", 0, "--epochs", 2, "--out", "final/zero")
    assert result.exit_code == 0, result.output
    assert result.output.count("train_loss") == 2
    info = json.loads((tmp_path / "final" / "zero.json").read_text())
    assert info["trial"] == 0 and info["epochs"] == 2 and info["weights"] == "zero.pt"
    state = torch.load(tmp_path / "final" / "zero.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_train_a_regression_config_reports_regression_metrics(cli, write_study,
                                                              tmp_path: Path) -> None:
    assert cli("search", write_study(REGRESSION)).exit_code == 0
    assert cli("report", "reg", "--export", "best.yaml").exit_code == 0
    result = cli("train", "best.yaml")
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "models" / "reg-best.json").read_text())
    assert {"test_mse", "test_rmse", "test_mae", "test_r2"} <= set(info["test_metrics"])
    best = optuna.load_study(study_name="reg", storage="sqlite:///tunecli.db").best_trial
    assert info["task"] == "regression" and info["search_value"] == pytest.approx(best.value)
    assert info["trial"] == best.number
    # as `train NAME` does, the search's value is printed beside the test metrics
    assert f"the search's {info['search_metric']} of this configuration: " \
           f"{best.value:.4f}" in result.output
    assert len(info["normalization"]["mean"]) == 5


@pytest.mark.parametrize(("args", "words"), [
    (["study.yaml"], "space.lr: 'lr' is still a search range"),
    (["tiny", "--trial", "99"], "study 'tiny' has no trial #99"),
    (["study.yaml", "--trial", "0"], "--trial picks a trial of a stored study"),
    (["nosuch"], "nosuch"),
])
def test_train_bad_input_exits_2(cli, write_study, args, words) -> None:
    write_study()
    assert cli("search", "study.yaml").exit_code == 0
    result = cli("train", *args)
    assert result.exit_code == 2, result.output
    assert words in result.output and "Traceback" not in result.output


def test_train_refuses_a_pruned_trial_and_lists_completed_ones(cli, write_study) -> None:
    assert cli("search", write_study()).exit_code == 0
    study = optuna.load_study(study_name="tiny", storage="sqlite:///tunecli.db")
    first = study.trials[0]
    study.add_trial(create_trial(state=TrialState.PRUNED, params=first.params,
                                 distributions=first.distributions,
                                 intermediate_values={1: 0.1}))
    number = study.trials[-1].number
    result = cli("train", "tiny", "--trial", number)
    assert result.exit_code == 2
    assert f"trial #{number} of 'tiny' is pruned, not complete" in result.output
    assert "Completed trials:" in result.output


def test_train_needs_a_test_part(cli, write_study) -> None:
    text = TINY_STUDY.replace("n_classes: 3}", "n_classes: 3, test_fraction: 0}")
    assert cli("search", write_study(text)).exit_code == 0
    result = cli("train", "tiny")
    assert result.exit_code == 2
    assert "trainer.dataset.test_fraction" in result.output
