"""Pruning: name -> Optuna pruner, the epochs at which it may act, and the decision after an
epoch. Changing how a trial is pruned is a change here (and to the spec's ``pruner`` keys).

A single-objective trial reports each epoch's metric to Optuna, whose pruner decides; a study
of several objectives cannot report to Optuna (``Trial.report`` raises), so it is pruned by
dominance (``objectives.dominated_at``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import optuna
from optuna.pruners import BasePruner
from optuna.trial import TrialState

from tunecli import attrs
from tunecli.engine.strategy import objectives

if TYPE_CHECKING:
    from tunecli.spec.models import StudySpec  # types only: the spec imports the registries

__all__ = ["PRUNER_FACTORIES", "Pruning", "make_pruner", "may_prune_at"]


def _median(spec: StudySpec) -> BasePruner:
    p = spec.pruner
    return optuna.pruners.MedianPruner(n_startup_trials=p.n_startup_trials,
                                       n_warmup_steps=p.min_epochs, **p.options)


def _percentile(spec: StudySpec) -> BasePruner:
    p = spec.pruner
    return optuna.pruners.PercentilePruner(p.percentile, n_startup_trials=p.n_startup_trials,
                                           n_warmup_steps=p.min_epochs, **p.options)


def _asha(spec: StudySpec) -> BasePruner:
    p = spec.pruner
    return optuna.pruners.SuccessiveHalvingPruner(
        min_resource=max(1, p.min_epochs), reduction_factor=p.reduction_factor, **p.options)


def _hyperband(spec: StudySpec) -> BasePruner:
    p = spec.pruner
    return optuna.pruners.HyperbandPruner(
        min_resource=max(1, p.min_epochs), max_resource=p.max_epochs or spec.trainer.epochs,
        reduction_factor=p.reduction_factor, **p.options)


def _none(spec: StudySpec) -> BasePruner:
    return optuna.pruners.NopPruner()


PRUNER_FACTORIES: dict[str, Callable[[StudySpec], BasePruner]] = {
    "median": _median,
    "percentile": _percentile,
    "asha": _asha,
    "hyperband": _hyperband,
    "none": _none,
}


def make_pruner(spec: StudySpec) -> BasePruner:
    pruner = PRUNER_FACTORIES[spec.pruner.type](spec)
    if spec.pruner.patience is not None and spec.pruner.type != "none":
        pruner = optuna.pruners.PatientPruner(pruner, patience=spec.pruner.patience)
    return pruner


def may_prune_at(spec: StudySpec) -> Callable[[int], bool]:
    """Epoch -> whether the pruner can act after it. Asking Optuna costs a storage read per
    trial and epoch; ASHA decides only at its rungs (min_epochs * reduction_factor ** k), the
    none pruner never. Every other pruner is asked every epoch but the last: a trial that has
    trained every epoch completes, as pruning it then would save nothing and would hide a real
    result from the sampler."""
    p = spec.pruner
    last = spec.trainer.epochs
    if p.type == "none":
        return lambda epoch: False
    if p.type != "asha" or p.patience is not None or set(p.options) - {"reduction_factor"}:
        return lambda epoch: epoch < last
    first = max(1, p.min_epochs)

    def at_rung(epoch: int) -> bool:
        rung = first
        while rung < epoch:
            rung *= p.reduction_factor
        return rung == epoch < last
    return at_rung




class Pruning:
    """After each epoch of a trial: whether the pruner stops it."""

    def __init__(self, spec: StudySpec) -> None:
        self.spec = spec
        self.may_prune = may_prune_at(spec)

    def after_epoch(self, trial: optuna.Trial, epoch: int, metrics: dict[str, float],
                    history: list[dict[str, float]], measures: dict[str, float]) -> bool:
        """Report the epoch to Optuna and ask its pruner (several objectives: dominance)."""
        if self.spec.multi_objective:
            return self._dominated(trial, epoch, history, measures)
        trial.report(metrics[self.spec.metric], epoch)
        return self.may_prune(epoch) and trial.should_prune()

    def _dominated(self, trial: optuna.Trial, epoch: int, history: list[dict[str, float]],
                   measures: dict[str, float]) -> bool:
        """Multi-objective pruning (Optuna has none): see ``objectives.dominated_at``."""
        spec = self.spec
        trial.set_user_attr(attrs.EPOCHS_DONE, epoch)
        if (not self.may_prune(epoch) or epoch < spec.pruner.min_epochs
                or spec.pruner.type == "none"):
            return False
        trials = trial.study.get_trials(deepcopy=False)
        if sum(t.state == TrialState.COMPLETE for t in trials) < spec.pruner.n_startup_trials:
            return False
        by = objectives.dominated_at(spec, trials, trial.number, epoch, history, measures)
        if len(by) < objectives.DOMINATORS:
            return False
        trial.set_user_attr(attrs.PRUNED_BY, by[:5])
        return True
