"""budget.epochs: compute counted over every trial, run and worker; exact, with no trial
started once it is spent, fused or not, pruned or not."""

from __future__ import annotations

import json
import subprocess

import optuna
import pytest
from conftest import TINY_STUDY, stored, tunecli_command

from tunecli.engine.search import budget
from tunecli.spec.models import BudgetSpec

COMPUTE = (TINY_STUDY.replace("budget: {n_trials: 6}", "budget: {epochs: 20}")
           .replace("type: median, n_startup_trials: 2", "type: none, n_startup_trials: 2"))


def spent() -> int:
    return budget.epochs_spent(stored())


def trained(trial: optuna.trial.FrozenTrial) -> int:
    return len(trial.intermediate_values)


@pytest.mark.parametrize("fuse", ["1", "4"])
def test_the_budget_is_spent_exactly_and_no_trial_starts_after(cli, write_study,
                                                               fuse: str) -> None:
    result = cli("search", write_study(COMPUTE), "--fuse", fuse)
    assert result.exit_code == 0, result.output
    trials = [t for t in stored() if not t.user_attrs.get("surplus")]
    assert spent() == 20
    # six whole trials of 3 epochs, and one cut to the 2 left, which completes
    assert sorted(trained(t) for t in trials) == [2, 3, 3, 3, 3, 3, 3]
    assert all(t.state.name == "COMPLETE" for t in trials)
    assert "the budget is met" in result.output
    report = json.loads(cli("report", "tiny", "--format", "json").output)
    assert report["compute"] == {"epochs_spent": 20, "epochs_budget": 20}
    assert "compute: 20 of 20 epochs spent" in cli("report", "tiny").output


def test_pruned_trials_give_back_what_they_did_not_train(cli, write_study) -> None:
    text = COMPUTE.replace("type: none, n_startup_trials: 2", "type: asha, n_startup_trials: 0")
    text = text.replace("epochs: 3", "epochs: 4").replace("{epochs: 20}", "{epochs: 30}")
    assert cli("search", write_study(text), "--fuse", "1").exit_code == 0
    trials = stored()
    assert spent() == 30
    assert any(t.state.name == "PRUNED" for t in trials)  # so more trials ran than 30 / 4


def test_exact_across_resume(cli, write_study) -> None:
    path = write_study(COMPUTE.replace("{epochs: 20}", "{epochs: 20, n_trials: 3}"))
    assert cli("search", path).exit_code == 0
    assert spent() == 9
    result = cli("resume", "tiny", "--n-trials", "100")
    assert result.exit_code == 0, result.output
    assert spent() == 20
    assert cli("resume", "tiny").exit_code == 0  # spent: nothing more starts
    assert spent() == 20 and len([t for t in stored() if not t.user_attrs.get("surplus")]) == 7


@pytest.mark.parametrize("fuse", ["1", "3"])
def test_exact_across_workers(write_study, subprocess_env, fuse: str) -> None:
    path = write_study(COMPUTE.replace("{epochs: 20}", "{epochs: 31}"))
    result = subprocess.run([*tunecli_command(), "search", str(path), "--workers", "2",
                             "--fuse", fuse],
                            capture_output=True, text=True, env=subprocess_env, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert spent() == 31
    trials = [t for t in stored() if not t.user_attrs.get("surplus")]
    assert all(trained(t) >= 1 for t in trials)  # none started with nothing left to train


def test_epochs_alone_means_no_trial_count_limit() -> None:
    assert BudgetSpec.model_validate({"epochs": 480}).n_trials is None
    assert BudgetSpec.model_validate({"epochs": 480, "n_trials": 5}).n_trials == 5
    assert BudgetSpec().n_trials == 20


def test_claims_count_running_trials_and_failed_ones_partial_epoch() -> None:
    study = optuna.create_study()
    done = study.ask()
    for epoch in (1, 2, 3):
        done.report(0.5, epoch)
    study.tell(done, 0.5)
    failed = study.ask()
    failed.report(0.1, 1)
    study.tell(failed, state=optuna.trial.TrialState.FAIL)  # NaN in its 2nd epoch: 2 ran
    claimed = study.ask()
    claimed.set_user_attr(budget.CLAIM_ATTR, 4)
    unclaimed = study.ask()  # started, claim not stored yet: assumed a whole trial
    me = study.ask()
    trials = study.get_trials()
    assert budget.epochs_spent(trials) == 3 + 2
    assert budget.claim(me.number, trials, budget=18, epochs_per_trial=5) == 18 - 5 - 4 - 5
    assert budget.claim(me.number, trials, budget=14, epochs_per_trial=5) == 0
    assert budget.claim(unclaimed.number, trials, budget=100, epochs_per_trial=5) == 5
