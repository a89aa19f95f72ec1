"""trainer.repeats and trainer.cv: several runs per trial in lockstep, the mean reported."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TINY_STUDY, Collect, stored
from tunecli.spec import TrainerSpec
from tunecli.trainer import data as data_sets
from tunecli.trainer import loop
from tunecli.trainer.repeats import run_repeated

PARAMS = {"lr": 0.01, "width": 16, "dropout": 0.2, "batch_size": 32}



def trainer(**kw: Any) -> TrainerSpec:
    return TrainerSpec.model_validate({
        "dataset": {"name": "synthetic-classification", "n_samples": 300, "n_features": 8},
        "epochs": 3, **kw})


def lone(spec: TrainerSpec) -> list[dict[str, float]]:
    reporter = Collect()
    loop.train(spec, PARAMS, reporter, metric="val_accuracy")
    return reporter.metrics


def test_repeats_report_the_mean_of_runs_that_equal_lone_trials() -> None:
    spec = trainer(repeats=3, seed=5)
    reporter = Collect()
    result = run_repeated(spec, PARAMS, reporter, metric="val_loss", direction="minimize")
    alone = [lone(trainer(seed=5 + r)) for r in range(3)]  # dropout: own random state each
    for epoch, mean in enumerate(reporter.metrics):
        runs = [a[epoch]["val_loss"] for a in alone]
        assert mean["val_loss"] == pytest.approx(statistics.fmean(runs), rel=1e-6)
        assert mean["val_loss_std"] == pytest.approx(statistics.pstdev(runs), rel=1e-5)
    best = min(range(3), key=lambda e: reporter.metrics[e]["val_loss"])
    assert result.best_epoch == best + 1
    assert result.spread["kind"] == "repeats" and result.spread["runs"] == 3
    assert result.spread["values"] == pytest.approx([a[best]["val_loss"] for a in alone])


def test_cv_validates_on_each_fold_once() -> None:
    spec = trainer(cv=4)
    bundles = [data_sets.load(spec.dataset, None, False, loop.resolve_device("cpu"),
                              fold=(f, 4)) for f in range(4)]
    plain = data_sets.load(spec.dataset, None, False, loop.resolve_device("cpu"))
    rows = len(plain.x_train) + len(plain.x_val)
    assert sum(len(b.x_val) for b in bundles) == rows  # every row validated once
    assert all(len(b.x_train) + len(b.x_val) == rows for b in bundles)
    assert all(len(b.x_test) == len(plain.x_test) for b in bundles)  # the test part stays out
    reporter = Collect()
    result = run_repeated(spec, PARAMS, reporter, metric="val_accuracy")
    assert result.spread["kind"] == "cv" and len(result.spread["values"]) == 4
    assert len(set(result.spread["values"])) > 1  # folds differ


def test_a_prune_stops_every_run() -> None:
    reporter = Collect(prune_at=2)
    with pytest.raises(RuntimeError, match="pruned"):
        run_repeated(trainer(repeats=2), PARAMS, reporter, metric="val_accuracy")
    assert len(reporter.metrics) == 2


def test_early_stopping_watches_the_mean() -> None:
    spec = trainer(repeats=2, epochs=30, early_stopping=1)
    result = run_repeated(spec, {**PARAMS, "lr": 1e-6}, Collect(), metric="val_accuracy")
    assert result.stopped_early and result.epochs_run < 30


def test_a_study_with_cv_stores_and_shows_the_spread(cli, write_study, tmp_path: Path) -> None:
    text = TINY_STUDY.replace("epochs: 3", "epochs: 2\n  cv: 3").replace("n_trials: 6",
                                                                          "n_trials: 3")
    result = cli("search", write_study(text))
    assert result.exit_code == 0, result.output
    trials = [t for t in stored() if t.state.name == "COMPLETE"]
    assert trials and all(t.user_attrs["spread"]["runs"] == 3 for t in trials)
    assert all("val_accuracy_std" in t.user_attrs["history"][0] for t in trials)
    best = max(trials, key=lambda t: t.value)  # type: ignore[arg-type,return-value]
    assert best.value == pytest.approx(statistics.fmean(best.user_attrs["spread"]["values"]))
    assert "(mean of 3 folds:" in result.output


@pytest.mark.parametrize(("extra", "words"), [
    ("\n  cv: 3\n  repeats: 2", "trainer.repeats: trainer.repeats and trainer.cv are both set"),
    ("\n  repeats: 2", "budget.epochs: budget.epochs counts one run's epochs"),
])
def test_repeats_bad_input(cli, write_study, extra: str, words: str) -> None:
    text = TINY_STUDY.replace("epochs: 3", "epochs: 3" + extra)
    if "repeats: 2" in extra and "cv" not in extra:
        text = text.replace("budget: {n_trials: 6}", "budget: {epochs: 30}")
    result = cli("validate", write_study(text))
    assert result.exit_code == 2 and words in result.output, result.output
