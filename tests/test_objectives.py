"""Several objectives and constraints: the spec, the measures, constraints checked before
training, pruning by dominance, the front in every report, and ``train --pick``."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import optuna
import pytest
import torch
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from tests.conftest import TINY_STUDY, needs_browser, render_in_browser, stored
from tunecli.engine.search.reporter import TrialReporter
from tunecli.engine.search.signals import StopSignals
from tunecli.engine.strategy.objectives import DOMINATORS, dominated_at, pick
from tunecli.engine.strategy.pruners import Pruning
from tunecli.spec import StudySpec
from tunecli.trainer.measures import measure, measure_config

# TINY_STUDY as accuracy against parameters, widths from 2 to 64, with a size constraint that
# the widest configurations break.
SIZE_STUDY = (TINY_STUDY
              .replace("metric: val_accuracy\ndirection: maximize\n",
                       "objectives:\n  - {metric: val_accuracy, direction: maximize}\n"
                       "  - {metric: params, direction: minimize}\n"
                       "constraints: ['params <= 1200']\n")
              .replace("n_trials: 6", "n_trials: 14")
              .replace("width: {int: [8, 32]}", "width: {int: [2, 64], log: true}")
              .replace("epochs: 3", "epochs: 4"))


def _spec(text: str = SIZE_STUDY) -> StudySpec:
    import yaml

    return StudySpec.model_validate(yaml.safe_load(text))


# --- the spec ---------------------------------------------------------------------------------

def test_objectives_set_the_primary_metric_and_directions() -> None:
    spec = _spec()
    assert spec.multi_objective and spec.metric == "val_accuracy"
    assert spec.directions == ["maximize", "minimize"]
    assert [str(c) for c in spec.parsed_constraints()] == ["params <= 1200"]
    # Its stored form (metric/direction filled in) loads again.
    assert StudySpec.model_validate({k: v for k, v in spec.stored().items()
                                     if k != "base_dir"}).objective_names == ["val_accuracy",
                                                                              "params"]


@pytest.mark.parametrize(("change", "path", "words"), [
    (lambda t: "metric: val_loss\n" + t, "study.yaml", "either metric/direction or objectives"),
    (lambda t: t.replace("{metric: params, direction: minimize}",
                         "{metric: parms, direction: minimize}"),
     "objectives.1.metric", "unknown measure 'parms'"),
    (lambda t: t.replace("'params <= 1200'", "'params is small'"), "constraints",
     "is not a constraint"),
    (lambda t: t.replace("'params <= 1200'", "'weights <= 5'"), "constraints.0",
     "unknown name 'weights'"),
    (lambda t: t.replace("{metric: val_accuracy, direction: maximize}",
                         "{metric: flops, direction: minimize}"),
     "objectives.0.metric", "must be a per-epoch metric"),
    (lambda t: t.replace("type: tpe", "type: hyperopt-tpe"), "sampler.type",
     "searches one objective"),
])
def test_bad_objectives_are_caught_before_anything_runs(cli, write_study, change, path,
                                                        words) -> None:
    study = write_study(change(SIZE_STUDY))
    result = cli("search", study)
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert "Traceback" not in line and words in line and str(study) in line
    if path != "study.yaml":
        assert path in line
    assert not Path("tunecli.db").exists() or not optuna.get_all_study_names(
        "sqlite:///tunecli.db")


# --- the measures -----------------------------------------------------------------------------

def test_measures_of_a_known_mlp() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    x, y = torch.randn(40, 8), torch.randint(0, 3, (40,))
    got = measure(model, x, 32, {"params", "flops", "latency_ms", "latency_batch_ms",
                                 "peak_memory_mb"},
                  make_optimizer=lambda ps: torch.optim.Adam(ps), loss_fn=torch.nn.functional
                  .cross_entropy, target=y)
    assert got["params"] == 8 * 16 + 16 + 16 * 3 + 3
    assert got["flops"] == 2 * (8 * 16 + 16 * 3)  # a multiply-add is 2, per example
    assert got["latency_ms"] > 0 and got["latency_batch_ms"] > 0
    # Weights, gradients and Adam's two moments (4 x 4 bytes a weight), plus activations.
    assert got["peak_memory_mb"] * 2**20 > 4 * 4 * got["params"]
    assert model.training  # measuring leaves the model as it found it


def test_measure_config_builds_the_trial_model() -> None:
    spec = _spec()
    params = {"lr": 0.01, "width": 10, "optimizer": "adam"}
    got = measure_config(spec.trainer, params, {"params"})
    # The built-in MLP on 8 features and 3 classes: two hidden layers (depth's default) of 10.
    assert got["params"] == (8 * 10 + 10) + (10 * 10 + 10) + (10 * 3 + 3)


# --- constraints, pruning and reports, end to end ------------------------------------------------

@pytest.fixture
def size_study(cli, write_study) -> dict[str, object]:
    result = cli("search", write_study(SIZE_STUDY))
    assert result.exit_code == 0, result.output
    return {"output": result.output, "trials": stored()}


def test_a_constraint_the_architecture_breaks_costs_no_epoch(size_study) -> None:
    trials = size_study["trials"]
    infeasible = [t for t in trials if t.user_attrs.get("infeasible")]
    assert infeasible, "no sampled width broke params <= 1200"
    for t in infeasible:
        assert t.state == TrialState.PRUNED
        assert t.user_attrs["measures"]["params"] > 1200
        assert t.constraints["params <= 1200"] > 0       # Optuna's samplers see it
        assert "history" not in t.user_attrs and "epochs_done" not in t.user_attrs
    feasible = [t for t in trials if t.state == TrialState.COMPLETE]
    assert feasible and all(t.constraints["params <= 1200"] <= 0 for t in feasible)
    assert all(len(t.values) == 2 and t.values[1] == t.user_attrs["measures"]["params"]
               for t in feasible)
    assert len(trials) == 14  # the budget counts them as trials
    # Pruned by dominance: after at least min_epochs, before the last epoch, with its reason.
    dominated = [t for t in trials if t.user_attrs.get("pruned_by")]
    assert dominated and all(t.state == TrialState.PRUNED and 1 <= t.user_attrs["epochs_done"]
                             < 4 for t in dominated)
    assert re.search(r"trial +\d+ pruned .* after epoch [123]\b", size_study["output"])


def test_compute_budget_counts_multi_objective_epochs(cli, write_study) -> None:
    text = SIZE_STUDY.replace("budget: {n_trials: 14}", "budget: {epochs: 22}")
    assert cli("search", write_study(text)).exit_code == 0
    data = json.loads(cli("report", "tiny", "--format", "json").output)
    assert data["compute"] == {"epochs_spent": 22, "epochs_budget": 22}
    assert sum(t["epochs"] for t in data["trials"]) == 22


def test_front_in_terminal_json_csv_and_optuna(cli, size_study) -> None:
    text = cli("report", "tiny").output
    assert "max val_accuracy, min params" in text
    assert re.search(r"Pareto front \((\d+) trials", text)
    assert re.search(r"constraints: params <= 1200; infeasible: [1-9]\d* stopped before "
                     r"training", text)
    data = json.loads(cli("report", "tiny", "--format", "json").output)
    front = data["front"]
    study = optuna.load_study(study_name="tiny", storage="sqlite:///tunecli.db")
    assert sorted(front) == sorted(t.number for t in study.best_trials)  # Optuna agrees
    rows = {r["number"]: r for r in data["trials"]}
    assert all(set(rows[n]["values"]) == {"val_accuracy", "params"} for n in front)
    table = list(csv.DictReader(io.StringIO(cli("report", "tiny", "--format", "csv").output)))
    assert {r["number"] for r in table if r["pareto_front"] == "1"} == {str(n) for n in front}
    assert all(r["params"] for r in table if r["state"] == "complete")


def test_train_pick_smallest_within(cli, size_study) -> None:
    study = optuna.load_study(study_name="tiny", storage="sqlite:///tunecli.db")
    spec = _spec()
    best, _ = pick(study, spec, "best")
    small, why = pick(study, spec, "smallest-within 1.0")  # every front trial is within 1.0
    assert small.values[1] == min(t.values[1] for t in study.best_trials)
    assert best.values[0] == max(t.values[0] for t in study.best_trials)
    front = study.best_trials
    assert why.startswith(f"{len(front)} trial") and f"#{small.number} has the lowest" in why
    assert all(f"#{t.number} (" in why for t in front)  # each trial within the tolerance
    result = cli("train", "tiny", "--pick", "smallest-within 1.0", "--out", "m/small")
    assert result.exit_code == 0, result.output
    assert f"trial #{small.number}" in result.output and Path("m/small.pt").is_file()
    assert "picked: " in result.output and "has the lowest" in result.output
    bad = cli("train", "tiny", "--pick", "fastest-within 0.01")
    assert bad.exit_code == 2 and "latency_ms" in bad.output and "Traceback" not in bad.output


@needs_browser
def test_html_report_shows_the_front_and_hypervolume(cli, size_study, tmp_path) -> None:
    page = tmp_path / "size.html"
    assert cli("report", "tiny", "--html", page).exit_code == 0
    body, dom, log = render_in_browser(page, tmp_path / "profile")
    assert 'data-done="yes"' in body and 'data-errors=""' in body, body
    for key in ("pareto", "hypervolume"):
        tag = re.search(rf'<div[^>]*id="fig-{key}"[^>]*>', dom)
        assert tag and 'data-rendered="yes"' in tag.group(0), key
    assert '<section id="front">' in dom
    assert "CONSOLE" not in log


# --- pruning by dominance -----------------------------------------------------------------------

def _finished(number: int, curve: list[float], params: float, state: TrialState
              ) -> optuna.trial.FrozenTrial:
    history = [{"epoch": e, "val_accuracy": v} for e, v in enumerate(curve, start=1)]
    return create_trial(
        state=state, values=[curve[-1], params] if state == TrialState.COMPLETE else None,
        params={"lr": 0.01}, distributions={"lr": FloatDistribution(1e-3, 1e-1, log=True)},
        user_attrs={"history": history, "measures": {"params": params}})


def test_dominated_at_compares_the_same_epoch_and_size() -> None:
    spec = _spec()
    trials = [_finished(0, [0.5, 0.8, 0.9], 100, TrialState.COMPLETE),
              _finished(1, [0.6, 0.7, 0.8], 300, TrialState.COMPLETE),
              _finished(2, [0.1], 50, TrialState.PRUNED)]  # stopped after epoch 1
    for i, t in enumerate(trials):
        t.number = i
    mine = [{"epoch": 1, "val_accuracy": 0.4}, {"epoch": 2, "val_accuracy": 0.65}]
    # At epoch 2: trial 0 (smaller, 0.8) dominates; trial 1 is larger; trial 2 never got there.
    assert dominated_at(spec, trials, 9, 2, mine, {"params": 200}) == [0]
    # At epoch 1 both 0 and 1 were more accurate, but only 0 is no larger.
    assert dominated_at(spec, trials, 9, 1, mine[:1], {"params": 200}) == [0]
    assert dominated_at(spec, trials, 9, 1, mine[:1], {"params": 400}) == [0, 1]
    assert dominated_at(spec, trials, 9, 2, mine, {"params": 50}) == []  # smallest: kept


def test_a_dominated_trial_is_pruned_and_a_front_one_is_not() -> None:
    spec = _spec(SIZE_STUDY.replace("epochs: 4", "epochs: 6"))
    study = optuna.create_study(directions=spec.directions)
    for curve, params in (([0.7, 0.8, 0.9, 0.9, 0.9, 0.9], 100),
                          ([0.6, 0.7, 0.8, 0.85, 0.88, 0.9], 150),
                          ([0.5, 0.6, 0.6, 0.6, 0.6, 0.6], 50)):
        study.add_trial(_finished(0, curve, params, TrialState.COMPLETE))
    assert DOMINATORS == 2

    def reporter(params: float) -> TrialReporter:
        trial = study.ask()
        return TrialReporter(trial, Pruning(spec), StopSignals(), "val_accuracy",
                             measures={"params": params})

    larger = reporter(200)
    larger.report(1, {"val_accuracy": 0.65})  # only trial 0 was ahead after one epoch
    with pytest.raises(optuna.TrialPruned):
        larger.report(2, {"val_accuracy": 0.65})  # now trials 0 and 1, both smaller
    assert larger.trial.user_attrs["pruned_by"] == [0, 1]
    assert larger.trial.user_attrs["epochs_done"] == 2
    smaller = reporter(40)  # smaller than every finished trial: on the front at any accuracy
    for epoch in range(1, 6):
        smaller.report(epoch, {"val_accuracy": 0.3})


# --- comparisons and resume -----------------------------------------------------------------------

def _hypervolume_2d(points: list[tuple[float, float]], reference: tuple[float, float]) -> float:
    """Area dominated by (loss, loss) points up to ``reference``: a plain sweep."""
    area, best_y = 0.0, reference[1]
    for x, y in sorted(points):
        if y < best_y:
            area += (reference[0] - x) * (best_y - y)
            best_y = y
    return area


def test_multi_objective_studies_compare_by_hypervolume(cli, write_study) -> None:
    study = write_study(SIZE_STUDY)
    assert cli("search", study).exit_code == 0
    assert cli("search", study, "--name", "tiny-random", "--set", "sampler.type=random",
               "--set", "pruner.type=none").exit_code == 0
    data = json.loads(cli("report", "tiny", "tiny-random", "--format", "json").output)
    assert data["by"] == "hypervolume" and data["metric"] == "hypervolume"
    losses = {name: [(-t.values[0], t.values[1]) for t in stored(name=name)
                     if t.state == TrialState.COMPLETE
                     and all(v <= 0 for v in t.constraints.values())]
              for name in ("tiny", "tiny-random")}
    everything = [p for points in losses.values() for p in points]
    reference = (max(p[0] for p in everything), max(p[1] for p in everything))
    for name, points in losses.items():
        expected = _hypervolume_2d(points, reference)
        assert data["studies"][name]["hypervolume"] == pytest.approx(expected)
        curve = data["curves"][name]["best"]
        assert curve == sorted(curve) and curve[-1] == pytest.approx(expected)
    text = cli("report", "tiny", "tiny-random").output
    assert "best hypervolume so far" in text and "compared by the hypervolume" in text


def test_resume_of_a_multi_objective_study_ends_at_its_budget(cli, write_study) -> None:
    study = write_study(SIZE_STUDY)
    assert cli("search", study, "--n-trials", "5").exit_code == 0
    assert cli("resume", "tiny", "--n-trials", "9").exit_code == 0
    trials = stored()
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 9
    assert all(len(t.values) == 2 for t in trials if t.state == TrialState.COMPLETE)


def test_list_and_copy_a_multi_objective_study(cli, write_study) -> None:
    assert cli("search", write_study(SIZE_STUDY), "--n-trials", "5").exit_code == 0
    listed = cli("list")
    assert listed.exit_code == 0, listed.output
    assert "max/min" in listed.output and "front of" in listed.output
    copied = cli("copy", "tiny", "tiny-2")
    assert copied.exit_code == 0, copied.output
    assert [t.values for t in stored(name="tiny-2")] == [t.values for t in stored()]
