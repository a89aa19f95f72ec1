"""The compute budget (``budget.epochs``): epochs counted over all trials, workers and runs.

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

from collections.abc import Iterable

from optuna.trial import FrozenTrial, TrialState

from tunecli import attrs

__all__ = ["claim", "epochs_in_use", "epochs_of", "epochs_reported", "epochs_spent", "in_use"]

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
