"""The budget, counted in one place: trials (``budget.n_trials``), epochs (``budget.epochs``),
the time limit and the failure limit, over all trials, workers and runs.

Trials: ``n_trials`` counts *finished* trials (complete + pruned) in the storage, so a resumed
study ends with exactly that many. Before asking, the driver checks the slots left (running
trials count as claims); after asking, a trial that lost a race to another worker (it sees as
many claims before its own number as the budget allows) becomes surplus: failed with
``surplus`` set, which reports leave out, and never trained. A waiting trial numbered before
it counts as a claim too: Optuna hands waiting trials out first, so one still waiting is about
to be taken (a fused group's configuration, enqueued just before another worker asked).

Epochs (``budget.epochs``):

Trials are not the unit a user pays in: a pruned trial costs a few epochs, a full one all of
them. ``budget.epochs`` caps the epochs trained by the whole study.

Spent: every epoch a trial reported, over every trial the storage holds (so resumes and other
workers count), plus the epoch a failed or lost trial stopped in (it ran, partly). A retry that
continues a checkpoint counts only the epochs it trains again.

Claims make the cap exact without a lock: a trial that starts claims the epochs it may train,
``min(trainer.epochs, budget - what the others use)``, where a finished trial uses what it
spent and a running one its claim (or, if it has not stored one yet, a whole trial's epochs:
two trials that start together each assume the other takes everything, never both the same
epochs). A trial whose claim is 0 never trains (it is surplus, like a worker's lost race); one
whose claim is short ends after it, as early stopping would end it, and completes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

import optuna
from optuna.trial import FrozenTrial, TrialState

from tunecli import attrs
from tunecli.engine.store.recovery import count_trials, reap_lost_trials
from tunecli.engine.strategy.grid_queue import grid_claim_lost, grid_exhausted

if TYPE_CHECKING:
    from tunecli.spec.models import StudySpec

__all__ = ["Budget", "Surplus", "claim", "epochs_in_use", "epochs_of", "epochs_reported",
           "epochs_spent", "in_use", "slots_left", "take_slot"]

CLAIM_ATTR = attrs.EPOCH_CLAIM


def epochs_reported(trial: FrozenTrial) -> int:
    """Epochs the trial finished and reported. Multi-objective trials cannot report to
    Optuna (``Trial.report`` raises): they count their epochs themselves."""
    return len(trial.intermediate_values) or int(trial.user_attrs.get(attrs.EPOCHS_DONE, 0))


def epochs_of(trial: FrozenTrial) -> int:
    """Epochs a finished, failed or lost trial trained (running ones: so far)."""
    if trial.user_attrs.get(attrs.SURPLUS):
        return 0
    reported = epochs_reported(trial)
    if trial.state == TrialState.FAIL:
        return reported + 1  # the epoch it stopped in ran, at least in part
    return reported


def epochs_spent(trials: Iterable[FrozenTrial]) -> int:
    return sum(epochs_of(t) for t in trials)


def in_use(trial: FrozenTrial, epochs_per_trial: int) -> int:
    """What a trial takes from the budget: spent if it is over, its claim while it runs."""
    if trial.user_attrs.get(attrs.SURPLUS) or trial.state == TrialState.WAITING:
        return 0
    if trial.state == TrialState.RUNNING:
        return int(trial.user_attrs.get(CLAIM_ATTR, epochs_per_trial))
    return epochs_of(trial)


def epochs_in_use(trials: Iterable[FrozenTrial], epochs_per_trial: int) -> int:
    return sum(in_use(t, epochs_per_trial) for t in trials)


def claim(number: int, trials: Iterable[FrozenTrial], budget: int,
          epochs_per_trial: int) -> int:
    """Epochs trial ``number`` may train: what the budget leaves it, at most a whole trial."""
    used = epochs_in_use((t for t in trials if t.number != number), epochs_per_trial)
    return max(0, min(epochs_per_trial, budget - used))


# ---------------------------------------------------------------------------------------------
# Trials


class Surplus(Exception):
    """This worker lost the race for the last trial slot (or a grid point) to another worker."""


_CLAIMS = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


def _claims_before(trial: optuna.Trial) -> int:
    """Finished, running or waiting trials numbered before this one (this worker's race
    check)."""
    return sum(1 for t in trial.study.get_trials(deepcopy=False, states=_CLAIMS)
               if t.number < trial.number and not t.user_attrs.get(attrs.SURPLUS))


def take_slot(trial: optuna.Trial, spec: StudySpec) -> int | None:
    """Claim ``trial``'s place in the budget: the epochs it may train under ``budget.epochs``
    (None without one). Raises ``Surplus`` (and marks it) when the budget or its grid point
    was taken by another worker."""
    budget = spec.budget
    lost = grid_claim_lost(trial) or (budget.n_trials is not None
                                      and _claims_before(trial) >= budget.n_trials)
    epochs = None
    if not lost and budget.epochs is not None:
        epochs = claim(trial.number, trial.study.get_trials(deepcopy=False), budget.epochs,
                       spec.trainer.epochs)
        lost = epochs == 0
    if lost:
        trial.set_user_attr(attrs.SURPLUS, True)
        raise Surplus()
    if epochs is not None:
        trial.set_user_attr(CLAIM_ATTR, epochs)
    return epochs


def slots_left(trials: list[FrozenTrial], spec: StudySpec) -> float:
    """Trials the budget still allows to start: by count, and by epochs."""
    budget = spec.budget
    left = math.inf
    if budget.n_trials is not None:
        counts = count_trials(trials)
        left = budget.n_trials - counts["finished"] - counts["running"]
    if budget.epochs is not None:
        left = min(left, budget.epochs - epochs_in_use(trials, spec.trainer.epochs))
    return left


class Budget:
    """One run's limits: the budget in the storage, its time limit and its failure limit."""

    def __init__(self, spec: StudySpec) -> None:
        self.spec = spec
        self.started = time.monotonic()
        self.failures = 0          # failed trials of this run (lost ones are not failures)
        timeout = spec.budget.timeout
        # time.monotonic() at which running trials stop at their next epoch (``TrialCut``)
        self.deadline = None if timeout is None else self.started + timeout

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def failures_left(self) -> int:
        """Trials that may still fail before the run stops: a run stops at exactly
        ``max_failures + 1`` failed trials, however many train at once."""
        return self.spec.budget.max_failures - self.failures + 1

    def room(self, in_flight: int) -> float:
        """Trials that may still start while ``in_flight`` train (a fused group's refills)."""
        return 0 if self.out_of_time() else self.failures_left() - in_flight

    def reason_to_stop(self, study: optuna.Study, trials: list[FrozenTrial]) -> str:
        """Why the run stops before another trial: budget | elsewhere | timeout | grid |
        failures ("" to go on). ``trials``: the study's trials, just read."""
        budget, epochs = self.spec.budget, self.spec.trainer.epochs
        if budget.epochs is not None:
            if epochs_spent(trials) >= budget.epochs:
                return "budget"
            if epochs_in_use(trials, epochs) >= budget.epochs:
                # What is left is claimed by running trials: elsewhere, unless their worker
                # died.
                reap_lost_trials(study)
                if epochs_in_use(study.get_trials(deepcopy=False), epochs) >= budget.epochs:
                    return "elsewhere"
        counts = count_trials(trials)
        finished = counts["finished"]
        if budget.n_trials is not None and finished >= budget.n_trials:
            return "budget"
        if budget.n_trials is not None and finished + counts["running"] >= budget.n_trials:
            # The last trials run elsewhere, unless their worker died: then retry them here.
            reap_lost_trials(study)
            running = count_trials(study.get_trials(deepcopy=False))["running"]
            if finished + running >= budget.n_trials:
                return "elsewhere"
        if self.out_of_time():
            return "timeout"
        if grid_exhausted(study):
            return "grid"
        if self.failures_left() <= 0:
            return "failures"
        return ""
