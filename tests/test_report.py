"""Reports: terminal (100 columns), importances, effort saved, HTML, comparison, TensorBoard."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from rich.console import Console

from tests.conftest import TINY_STUDY, browser, render_in_browser, stored
from tunecli.reports import summary as report
from tunecli.reports import terminal
from tunecli.spec import StudySpec

# TINY_STUDY with enough completed trials for importances.
TEN = TINY_STUDY.replace("n_trials: 6", "n_trials: 10")


def test_terminal_report_fits_100_columns(cli, write_study) -> None:
    assert cli("search", write_study(TEN)).exit_code == 0
    result = cli.runner.invoke(cli_app(), ["report", "tiny"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 100
    out = result.output
    assert "Best trial #" in out and "Top " in out
    assert re.search(r"epochs trained \d+ of 30 \(\d+% saved: pruning \d+%", out)
    assert "Parameter importances (fanova, " in out  # auto: fANOVA under 41 completed trials


def cli_app():
    from tunecli.cli import app

    return app


def test_json_report_has_importances_and_effort(cli, write_study) -> None:
    # one at a time: fused rounds share the optimizer, so momentum would be in every trial
    assert cli("search", write_study(TEN), "--fuse", "1").exit_code == 0
    data = json.loads(cli("report", "tiny", "--format", "json", "--importance", "fanova").output)
    imp = data["importances"]
    assert imp["method"] == "fanova" and imp["values"]
    assert set(imp["values"]) <= {"lr", "width", "optimizer"}
    assert math.isclose(sum(imp["values"].values()), 1.0, abs_tol=0.01)
    epochs = data["epochs"]
    spent = sum(t["epochs"] for t in data["trials"] if t["state"] in ("complete", "pruned"))
    assert epochs["spent"] == spent and epochs["budgeted"] == 30
    assert epochs["spent"] + epochs["saved_by_pruning"] + epochs["saved_by_early_stopping"] == 30


def test_unknown_importance_method_exits_2(cli, write_study) -> None:
    assert cli("search", write_study()).exit_code == 0
    result = cli("report", "tiny", "--importance", "shap")
    assert result.exit_code == 2
    assert "--importance" in result.output and "ped-anova" in result.output


def _study_with(trials: list) -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    for t in trials:
        study.add_trial(t)
    return study


SPEC = StudySpec.model_validate({
    "name": "made", "trainer": {"epochs": 10},
    "space": {"x": {"float": [0, 1]}, "noise": {"float": [0, 1]},
              "extra": {"float": [0, 1], "when": {"x": [0.5]}}}})


def test_effort_counts_what_pruning_and_early_stopping_saved() -> None:
    dist = {"x": FloatDistribution(0, 1)}
    history = [{"epoch": e, "epoch_seconds": 2.0} for e in (1, 2, 3)]
    trials = [
        create_trial(state=TrialState.COMPLETE, value=0.9, params={"x": 0.1},
                     distributions=dist, intermediate_values=dict.fromkeys(range(1, 11), 0.9),
                     user_attrs={"epochs_run": 10}),
        create_trial(state=TrialState.PRUNED, params={"x": 0.2}, distributions=dist,
                     intermediate_values={1: 0.1, 2: 0.1, 3: 0.1},
                     user_attrs={"history": history}),
        create_trial(state=TrialState.COMPLETE, value=0.8, params={"x": 0.3},
                     distributions=dist, intermediate_values=dict.fromkeys(range(1, 7), 0.8),
                     user_attrs={"epochs_run": 6}),   # early stopping after 6 epochs
        create_trial(state=TrialState.FAIL, params={"x": 0.4}, distributions=dist),
    ]
    effort = report.effort(trials, epochs_per_trial=10)
    assert effort["spent"] == 10 + 3 + 6
    assert effort["budgeted"] == 30                 # failed trials are not part of it
    assert effort["saved_by_pruning"] == 7
    assert effort["saved_by_early_stopping"] == 4
    line = report.effort_line(effort)
    assert line.startswith("epochs trained 19 of 30 (37% saved: pruning 23%, early stopping 13%)")


@pytest.mark.parametrize(("n", "auto"), [(30, "fanova"), (45, "ped-anova")])
def test_importances_weigh_the_parameter_that_matters_and_name_conditionals(n, auto) -> None:
    import random

    rng = random.Random(0)
    dist = FloatDistribution(0, 1)
    trials = []
    for i in range(n):
        x, noise = rng.random(), rng.random()
        params = {"x": x, "noise": noise}
        if i % 2:
            params["extra"] = rng.random()
        trials.append(create_trial(state=TrialState.COMPLETE, value=x + 0.01 * noise,
                                   params=params, distributions=dict.fromkeys(params, dist)))
    study = _study_with(trials)
    for method in report.IMPORTANCE_METHODS:
        imp = report.importances(study, SPEC, method)
        assert imp["method"] == (auto if method == "auto" else method)
        assert imp["n_trials"] == n
        assert next(iter(imp["values"])) == "x", (method, imp)
        assert imp["values"]["x"] > imp["values"]["noise"]
        assert imp["left_out"] == ["extra"]


def test_importances_explain_when_they_cannot_be_computed() -> None:
    dist = {"x": FloatDistribution(0, 1)}
    study = _study_with([create_trial(state=TrialState.COMPLETE, value=1.0, params={"x": 0.5},
                                      distributions=dist)])
    imp = report.importances(study, SPEC)
    assert imp["values"] == {} and "at least 3 completed trials" in imp["note"]
    console = Console(record=True, width=100)
    data = {"study": "made", "metric": "m", "direction": "maximize", "n_trials_budget": None,
            "counts": {"complete": 1, "pruned": 0, "failed": 0, "lost": 0, "running": 0,
                       "waiting": 0, "finished": 1},
            "epochs": report.effort([], 10), "importances": imp, "trials": [],
            "best": {"number": 0, "value": 1.0, "params": {"x": 0.5}}}
    terminal.show(console, data)
    assert "Parameter importances: needs at least 3 completed trials" in console.export_text()


def test_html_report_is_one_self_contained_file(cli, write_study, tmp_path: Path) -> None:
    assert cli("search", write_study(TEN)).exit_code == 0
    result = cli("report", "tiny", "--html", "out/report.html")
    assert result.exit_code == 0, result.output
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    for key in ("history", "curves", "importances", "parallel", "slices", "timeline"):
        assert f'data-figure="{key}"' in page
    assert "Best configuration" in page and "name: tiny-best" in page
    # Opens offline: no external script, style sheet or image.
    assert not re.search(r"""<(script|link|img)[^>]+(src|href)=["']?https?:""", page)
    assert "Plotly" in page and len(page) > 1_000_000  # plotly.js inlined


def _two_studies(cli, write_study) -> None:
    assert cli("search", write_study(TEN)).exit_code == 0
    other = TEN.replace("name: tiny", "name: rand").replace(
        "type: tpe, seed: 1, n_startup_trials: 3", "type: random, seed: 2")
    assert cli("search", write_study(other, "rand.yaml")).exit_code == 0


def test_comparison_of_two_studies(cli, write_study, tmp_path: Path) -> None:
    _two_studies(cli, write_study)
    result = cli.runner.invoke(cli_app(), ["report", "tiny", "rand"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "tiny" in out and "rand" in out and "tpe / median" in out and "random / median" in out
    assert "after 10 trials" in out and re.search(r"after \d+ epochs", out)

    data = json.loads(cli("report", "tiny", "rand", "--format", "json").output)
    for name in ("tiny", "rand"):
        curve = data["curves"][name]
        assert curve["trials"][-1] == 10
        assert curve["best"] == sorted(curve["best"])          # best so far never drops
        assert curve["epochs"] == sorted(curve["epochs"]) and curve["epochs"][-1] <= 30
        assert curve["best"][-1] == data["studies"][name]["best"]["value"]

    rows = cli("report", "tiny", "rand", "--format", "csv").output.splitlines()
    assert rows[0] == "study,trials_finished,epochs_trained,best_val_accuracy"

    assert cli("report", "tiny", "rand", "--html", "cmp.html").exit_code == 0
    page = (tmp_path / "cmp.html").read_text(encoding="utf-8")
    assert 'data-figure="comparison"' in page and "tiny vs rand" in page
    if browser() is not None:
        body, _, log = render_in_browser(tmp_path / "cmp.html", tmp_path / "profile")
        assert 'data-figures-rendered="1"' in body and 'data-errors=""' in body, body
        assert "CONSOLE" not in log

    refused = cli("report", "tiny", "rand", "--export", "best.yaml")
    assert refused.exit_code == 2 and "one study" in refused.output


def test_tensorboard_logs_one_run_per_trial_with_hparams(cli, write_study,
                                                         tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert cli("search", write_study(), "--tensorboard", "tb").exit_code == 0
    runs = sorted((tmp_path / "tb" / "tiny").iterdir())
    trials = optuna.load_study(study_name="tiny", storage="sqlite:///tunecli.db").get_trials()
    assert [r.name for r in runs] == [f"trial-{t.number:04d}" for t in trials]
    for run, trial in zip(runs, trials, strict=True):
        events = EventAccumulator(str(run))
        events.Reload()
        scalars = events.Tags()["scalars"]
        assert {"val_accuracy", "train_loss", "lr", "hparam/val_accuracy"} <= set(scalars)
        epochs = [s.step for s in events.Scalars("val_accuracy")]
        assert epochs == sorted(trial.intermediate_values)
        assert "_hparams_/session_start_info" in events.summary_metadata
        final = events.Scalars("hparam/val_accuracy")[-1].value
        expected = trial.value if trial.state == TrialState.COMPLETE else \
            trial.intermediate_values[max(trial.intermediate_values)]
        assert final == pytest.approx(expected, abs=1e-6)


def test_a_tensorboard_folder_that_cannot_be_written_stops_before_anything_runs(
        cli, write_study, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    (tmp_path / "tb").write_text("a file where the folder should be")
    result = cli("search", write_study(), "--tensorboard", "tb")
    assert result.exit_code == 2
    assert result.output.startswith("error: --tensorboard: cannot write to tb")
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "tunecli.db").exists()


def test_reports_of_a_study_where_nothing_completed(cli, write_study, tmp_path: Path) -> None:
    text = TINY_STUDY.replace("lr: {float: [1.0e-3, 1.0e-1], log: true}",
                              "lr: {float: [1.0e+8, 1.0e+9]}").replace(
        "n_trials: 6", "n_trials: 2").replace("{choice: [adam, sgd]}", "sgd")
    assert cli("search", write_study(text)).exit_code == 1  # every trial failed (NaN loss)
    table = cli("report", "tiny")
    assert table.exit_code == 0 and "No trial has completed yet." in table.output
    assert cli("report", "tiny", "--html", "r.html").exit_code == 0
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "No trial has completed yet." in page and 'data-figure="curves"' in page
    refused = cli("train", "tiny")
    assert refused.exit_code == 2 and "no completed trial" in refused.output
    # beside a study that worked, the comparison says why this one's trials failed
    assert cli("search", write_study(TINY_STUDY.replace("name: tiny", "name: good")),
               "--n-trials", "2").exit_code == 0
    compared = cli("report", "tiny", "good", "--html", "cmp.html")
    assert compared.exit_code == 0
    failed = len(stored())
    assert f"tiny: failed ×{failed} (e.g. trial #0): the training loss became" in \
        compared.output
    page = (tmp_path / "cmp.html").read_text(encoding="utf-8")
    assert 'id="failures"' in page and f"tiny: failed ×{failed}" in page


def _figure_study(n: int = 12) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    for i in range(n):
        trial = study.ask()
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        optimizer = trial.suggest_categorical("optimizer", ["adam", "sgd"])
        base = 0.9 + (0.05 if optimizer == "adam" else 0.0) + lr / 10
        for epoch in (1, 2, 3):
            trial.report(0.1 * epoch if i % 4 == 3 else base - 0.2 / epoch, epoch)
        if i % 4 == 3:
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, base - 0.2 / 3)
    return study


def test_figures_zoom_order_and_label_as_users_read_them() -> None:
    from tunecli.reports import figures

    study = _figure_study()
    trials = study.get_trials()
    curves = figures.learning_curves(trials, "val_accuracy", study.best_trial.number)
    assert curves.layout.yaxis.range is None  # every curve whole until the user zooms
    buttons = curves.layout.updatemenus[0].buttons
    assert [b.label for b in buttons] == ["all values", "zoom on the best"]
    low, high = buttons[1].args[0]["yaxis.range"]
    finals = [t.value for t in trials if t.state == TrialState.COMPLETE]
    assert min(finals) - 0.05 < low < min(finals) and high > max(finals)
    assert low > 0.5  # not the 0..1 knot: the pruned trials' 0.1-0.3 lie below the view
    pruned = {t.line.color or t.marker.color for t in curves.data if t.legendgroup == "pruned"}
    assert pruned == {"rgba(255,127,14,0.55)"}  # orange, as Optuna's timeline draws pruned

    panels = figures.slices(study, ["optimizer", "lr"], "val_accuracy")
    assert [panels.layout.xaxis.title.text, panels.layout.xaxis2.title.text] == [
        "optimizer", "lr"]  # most important first, not by name
    assert list(panels.layout.xaxis.categoryarray) == ["adam", "sgd"]
    assert {x for t in panels.data if t.xaxis == "x" for x in t.x} <= {"adam", "sgd"}
    assert panels.layout.xaxis2.type == "log"

    one = _figure_study(1)
    history = figures._history(one, "val_accuracy", one.get_trials())
    assert list(history.layout.xaxis.range) == [-0.5, 0.5] and history.layout.xaxis.dtick == 1

    same = {"trials": [1, 2], "epochs": [3, 6], "best": [0.5, 0.6]}
    compared = figures.comparison({"a": same, "b": same}, "val_accuracy")
    first, second = compared.data[0].line, compared.data[2].line
    assert first.dash != second.dash and first.width > second.width
