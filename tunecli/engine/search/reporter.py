"""The one reporter every runner gives a trial's epochs to.

Each epoch goes to the live view, the trackers and Optuna, whose pruner may stop the trial
(``optuna.TrialPruned``); past the run's time limit a trial that has epochs left stops after
the epoch it just stored (``TrialCut``: its checkpoint is where ``resume`` continues).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import optuna

from tunecli.engine.search.signals import StopSignals
from tunecli.engine.strategy.pruners import Pruning
from tunecli.engine.tracking import Tracker
from tunecli.errors import TrialCut

__all__ = ["TrialReporter"]


class TrialReporter:
    """``report(epoch, metrics)`` after each epoch of one trial; raises to stop it."""

    def __init__(self, trial: optuna.Trial, pruning: Pruning, signals: StopSignals,
                 metric: str, *, tracker: Tracker | None = None,
                 on_epoch: Callable[[str, int, float | None], None] | None = None,
                 label: str = "", deadline: float | None = None, last_epoch: int = 0,
                 measures: dict[str, float] | None = None) -> None:
        self.trial = trial
        self.pruning = pruning
        self.signals = signals
        self.metric = metric
        self.tracker = tracker
        self.on_epoch = on_epoch
        self.label = label or f"trial {trial.number}"
        self.deadline = deadline    # time.monotonic() at which the run's time limit passes
        self.last_epoch = last_epoch
        self.measures = measures or {}  # a multi-objective trial's measures (params, ...)
        self.history: list[dict[str, float]] = []

    def report(self, epoch: int, metrics: dict[str, float]) -> None:
        self.history.append({"epoch": epoch, **metrics})
        if self.on_epoch is not None:
            self.on_epoch(self.label, epoch, metrics.get(self.metric))
        if self.tracker is not None:
            self.tracker.epoch(self.trial.number, epoch, metrics)
        # A signal must not cut a storage write in half (it would leave SQLite locked).
        with self.signals.held():
            prune = self.pruning.after_epoch(self.trial, epoch, metrics, self.history,
                                             self.measures)
        if prune:
            raise optuna.TrialPruned(f"pruned after epoch {epoch}")
        if (self.deadline is not None and epoch < self.last_epoch
                and time.monotonic() >= self.deadline):
            raise TrialCut(epoch)  # stored and checkpointed: resume continues after it
