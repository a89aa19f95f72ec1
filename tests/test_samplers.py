"""Every sampler and every pruner runs a real short study (the registry drives the tests)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from rich.console import Console

from tests.conftest import TINY_STUDY, grid_study
from tunecli import spec as spec_module
from tunecli.api import Opened, run_here
from tunecli.engine.search import studies as study_module
from tunecli.engine.strategy import pruners
from tunecli.engine.strategy.pruners import PRUNER_FACTORIES as PRUNERS
from tunecli.engine.strategy.samplers import SAMPLER_FACTORIES as SAMPLERS


def run_study(tmp_path: Path, text: str) -> optuna.Study:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    spec = spec_module.load(path)
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    study = study_module.open_for_search(spec, url, str(path))
    with (tmp_path / "log").open("w") as log:
        run_here(Opened(study, spec, url), Console(file=log))
    return study


def finished(study: optuna.Study) -> int:
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(states=states))


@pytest.mark.parametrize("name", SAMPLERS)
def test_sampler_runs_a_study(tmp_path: Path, name: str) -> None:
    text = TINY_STUDY.replace("type: tpe, seed: 1, n_startup_trials: 3",
                              f"type: {name}, seed: 1" +
                              (", n_startup_trials: 3" if name in ("tpe", "gp", "hyperopt-tpe",
                                                                     "cmaes") else ""))
    text = text.replace("{float: [1.0e-3, 1.0e-1], log: true}",
                        "{float: [1.0e-3, 1.0e-1], log: true}" if name != "grid"
                        else "{choice: [0.003, 0.03]}")
    study = run_study(tmp_path, text)
    # a grid's points beyond the budget wait in the queue, never trained
    trials = [t for t in study.get_trials() if t.state != optuna.trial.TrialState.WAITING]
    # the grid here has 2 x 5 x 2 (x 5 momentum) points: more than the budget, so 6 for all
    assert finished(study) == 6 and len(trials) >= 6
    assert all(t.state != optuna.trial.TrialState.FAIL for t in trials)
    # conditional parameter only present with its parent's value
    for t in trials:
        assert ("momentum" in t.params) == (t.params["optimizer"] == "sgd")
        assert 1e-3 <= t.params["lr"] <= 1e-1 and 8 <= t.params["width"] <= 32


def test_grid_sampler_stops_when_exhausted(tmp_path: Path) -> None:
    text = grid_study(widest=10)
    study = run_study(tmp_path, text)
    points = [(t.params["lr"], t.params["width"]) for t in study.get_trials()]
    assert len(points) == 6 == len(set(points))  # 2 x 3 points, each once
    text = text.replace("n_trials: 6", "n_trials: 20").replace("name: tiny", "name: tiny2")
    study = run_study(tmp_path, text)
    assert len(study.get_trials()) == 6  # exhausted before the budget


def test_hyperopt_sampler_learns_from_history(tmp_path: Path) -> None:
    """After its startup trials, hyperopt's TPE concentrates near the good region."""
    from tunecli.engine.strategy.hyperopt_sampler import HyperoptTPESampler

    spec = spec_module.StudySpec.model_validate({"name": "h", "space": {
        "x": {"float": [-10, 10]}, "c": {"choice": ["a", "b"]}}})
    sampler = HyperoptTPESampler(spec.space, seed=0, n_startup_trials=10)
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: (t.suggest_float("x", -10, 10) - 3) ** 2 +
                   (0 if t.suggest_categorical("c", ["a", "b"]) == "b" else 5), n_trials=60)
    late = study.trials[30:]
    # random search would pick "b" half the time; hyperopt's own fmin reaches ~0.75 here
    assert sum(t.params["c"] == "b" for t in late) > len(late) * 0.65
    assert study.best_value < 0.5


@pytest.mark.parametrize("name", PRUNERS)
def test_pruner_runs_a_study(tmp_path: Path, name: str) -> None:
    text = TINY_STUDY.replace("type: median, n_startup_trials: 2, min_epochs: 1",
                              f"type: {name}, min_epochs: 1")
    text = text.replace("n_trials: 6", "n_trials: 10").replace("epochs: 3", "epochs: 4")
    study = run_study(tmp_path, text)
    assert finished(study) == 10
    pruned = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.PRUNED]
    if name == "none":
        assert not pruned
    for t in pruned:  # a pruned trial stopped before its last epoch, after min_epochs
        assert 1 <= t.last_step < 4


def test_patient_wrapper() -> None:
    spec = spec_module.validate({"name": "p", "pruner": {"type": "median", "patience": 2},
                                 "space": {"lr": {"float": [0.001, 0.1]}}}, "t")
    assert isinstance(pruners.make_pruner(spec), optuna.pruners.PatientPruner)
