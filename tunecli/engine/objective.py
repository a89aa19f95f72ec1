"""One trial: claim a budget slot, sample the space, train, report each epoch, store results.

KerasTuner's split, in Optuna's terms: a ``TrialFailed`` fails this trial and the study goes on;
a ``SpecError`` or an interrupt stops the search.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tunecli import attrs
from tunecli.engine import compute, objectives, outcome, space
from tunecli.engine.recovery import worker_id
from tunecli.engine.samplers import grid_claim_lost, may_prune_at
from tunecli.engine.signals import StopSignals
from tunecli.engine.tracking import Tracker
from tunecli.errors import SpecError, TrialCut, TrialFailed

if TYPE_CHECKING:
    from tunecli.spec.models import StudySpec  # types only: the spec imports the registries

__all__ = ["Objective", "Surplus"]


class Surplus(Exception):
    """This worker lost the race for the last trial slot (or a grid point) to another worker."""


class _TrialReporter:
    """The trainer's reporter: each epoch's metric goes to Optuna, which may prune."""

    def __init__(self, trial: optuna.Trial, metric: str, signals: StopSignals,
                 tracker: Tracker | None = None,
                 on_epoch: Callable[[str, int, float | None], None] | None = None,
                 label: str = "", may_prune: Callable[[int], bool] = lambda epoch: True,
                 several: StudySpec | None = None, measures: dict[str, float] | None = None,
                 deadline: float | None = None, last_epoch: int = 0) -> None:
        self.trial = trial
        self.deadline = deadline    # time.monotonic() at which the run's time limit passes
        self.last_epoch = last_epoch
        self.several = several      # a multi-objective study's spec: pruned by dominance
        self.measures = measures or {}
        self.may_prune = may_prune
        self.label = label or f"trial {trial.number}"
        self.metric = metric
        self.signals = signals
        self.tracker = tracker
        self.on_epoch = on_epoch
        self.history: list[dict[str, float]] = []

    def report(self, epoch: int, metrics: dict[str, float]) -> None:
        self.history.append({"epoch": epoch, **metrics})
        if self.on_epoch is not None:
            self.on_epoch(self.label, epoch, metrics.get(self.metric))
        if self.tracker is not None:
            self.tracker.epoch(self.trial.number, epoch, metrics)
        # A signal must not cut a storage write in half (it would leave SQLite locked).
        with self.signals.held():
            if self.several is not None:
                prune = self._dominated(epoch)
            else:
                self.trial.report(metrics[self.metric], epoch)
                prune = self.may_prune(epoch) and self.trial.should_prune()
        if prune:
            raise optuna.TrialPruned(f"pruned after epoch {epoch}")
        if (self.deadline is not None and epoch < self.last_epoch
                and time.monotonic() >= self.deadline):
            raise TrialCut(epoch)  # stored and checkpointed: resume continues after it

    def _dominated(self, epoch: int) -> bool:
        """Multi-objective pruning (Optuna has none): see ``objectives.dominated_at``."""
        spec = self.several
        assert spec is not None
        self.trial.set_user_attr(objectives.EPOCHS_ATTR, epoch)
        if (not self.may_prune(epoch) or epoch < spec.pruner.min_epochs
                or spec.pruner.type == "none"):
            return False
        trials = self.trial.study.get_trials(deepcopy=False)
        if sum(t.state == TrialState.COMPLETE for t in trials) < spec.pruner.n_startup_trials:
            return False
        by = objectives.dominated_at(spec, trials, self.trial.number, epoch, self.history,
                                     self.measures)
        if len(by) < objectives.DOMINATORS:
            return False
        self.trial.set_user_attr(attrs.PRUNED_BY, by[:5])
        return True


class Objective:
    """What ``study.optimize`` calls for each trial."""

    def __init__(self, spec: StudySpec, data_root: str | None, checkpoints: Path | None,
                 signals: StopSignals, tracker: Tracker | None = None) -> None:
        self.signals = signals
        self.spec = spec
        self.data_root = data_root
        self.checkpoints = checkpoints
        self.tracker = tracker
        self.may_prune = may_prune_at(spec)
        # trial number -> the epochs it may train under budget.epochs (engine/compute)
        self.epoch_claims: dict[int, int] = {}
        # (what trains: "trial 7" or a fused group, epoch, latest metric) after each epoch
        self.on_epoch: Callable[[str, int, float | None], None] | None = None
        # time.monotonic() when the run's time limit passes: running trials stop at the next
        # epoch boundary (``TrialCut``)
        self.deadline: float | None = None

    def _reporter(self, trial: optuna.Trial, label: str = "",
                  several: StudySpec | None = None) -> _TrialReporter:
        last = self.epoch_claims.get(trial.number) or self.spec.trainer.epochs
        return _TrialReporter(trial, self.spec.metric, self.signals, self.tracker,
                              self.on_epoch, label, self.may_prune, several,
                              deadline=self.deadline, last_epoch=last)

    def checkpoint_for(self, trial: optuna.Trial | FrozenTrial) -> Path | None:
        """One checkpoint per configuration: a retry continues its original trial's file."""
        if self.checkpoints is None:
            return None
        root = trial.user_attrs.get(attrs.RETRY_OF, trial.number)
        return self.checkpoints / f"trial-{root}.pt"

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        return self.train(trial, self.start(trial))

    def start(self, trial: optuna.Trial) -> dict[str, Any]:
        """Claim a budget slot and sample the space: the trial's parameters. Raises
        ``Surplus`` when the budget (or this grid point) was taken by another worker."""
        trial.set_user_attr(attrs.WORKER, worker_id())
        budget = self.spec.budget
        if grid_claim_lost(trial):
            trial.set_user_attr(attrs.SURPLUS, True)
            raise Surplus()
        if budget.n_trials is not None and _claims_before(trial) >= budget.n_trials:
            trial.set_user_attr(attrs.SURPLUS, True)
            raise Surplus()
        if budget.epochs is not None:
            epochs = compute.claim(trial.number, trial.study.get_trials(deepcopy=False),
                                   budget.epochs, self.spec.trainer.epochs)
            if epochs == 0:
                trial.set_user_attr(attrs.SURPLUS, True)
                raise Surplus()
            trial.set_user_attr(compute.CLAIM_ATTR, epochs)
            self.epoch_claims[trial.number] = epochs
        return space.suggest(trial, self.spec.space)

    def train(self, trial: optuna.Trial, params: dict[str, Any]) -> float | list[float]:
        """Train one trial alone; its value(s) (raises as ``study.optimize`` expects)."""
        if self.tracker is None:
            return self._train(trial, params)
        self.tracker.trial_started(trial.number, space.trial_config(self.spec.space,
                                                                    trial.params))
        state, value = "fail", None
        try:
            value = self._train(trial, params)
            state = "complete"
            return value
        except optuna.TrialPruned:
            state = "pruned"
            raise
        except (KeyboardInterrupt, TrialCut) as exc:
            state = outcome.state_word(*outcome.ended(exc))
            raise
        except Surplus:
            self.tracker.discard(trial.number)  # never a trial of its own: no run
            raise
        finally:
            self.tracker.trial_finished(trial.number, state,
                                        value[0] if isinstance(value, list) else value)

    def train_group(self, members: list[tuple[optuna.Trial, dict[str, Any]]],
                    finish: Callable[[optuna.Trial, TrialState, float | None], None],
                    refill: Callable[[int], list[tuple[optuna.Trial, dict[str, Any]]]]
                    | None = None, slots: int | None = None) -> None:
        """Train trials of one structure together as one fused model (``trainer.fused``).

        Each member is a whole trial: it reports every epoch and may be pruned; ``finish`` is
        called for it as soon as it leaves the group, so it is stored while the rest go on.
        ``refill(free)`` gives trials to join the group as members leave (up to ``slots`` at a
        time). Each member records the group (``fused_group``: its first trial) and the trials
        it trained alongside (``fused_with``).
        """
        from tunecli import trainer

        group = _Group(members[0][0].number)

        def join(joining: list[tuple[optuna.Trial, dict[str, Any]]]) -> list[Any]:
            group.join([trial.number for trial, _ in joining])
            jobs = [self._member_job(group, trial, params, finish) for trial, params in joining]
            group.relabel()
            return jobs

        jobs = join(members)
        with self.signals.interruptible():
            trainer.run_group(self.spec.trainer, jobs, metric=self.spec.metric,
                              direction=self.spec.direction, base_dir=self.spec.base_dir,
                              data_root=self.data_root,
                              refill=(lambda free: join(refill(free))) if refill else None,
                              slots=slots)

    def _member_job(self, group: _Group, trial: optuna.Trial, params: dict[str, Any],
                    finish: Callable[[optuna.Trial, TrialState, float | None], None]) -> Any:
        from tunecli.trainer.fused import MemberJob

        trial.set_user_attr(attrs.FUSED_GROUP, group.first)
        trial.set_user_attr(attrs.FUSED_WITH, sorted(group.met[trial.number]))
        if self.tracker is not None:
            self.tracker.trial_started(trial.number,
                                       space.trial_config(self.spec.space, trial.params))
        reporter = self._reporter(trial)
        group.reporters[trial.number] = reporter
        return MemberJob(params, reporter, self.checkpoint_for(trial),
                         stop_after=self.epoch_claims.get(trial.number),
                         on_end=functools.partial(self._member_ended, trial, reporter,
                                                  group, finish))

    def _member_ended(self, trial: optuna.Trial, reporter: _TrialReporter, group: _Group,
                      finish: Callable[[optuna.Trial, TrialState, float | None], None],
                      ended: Any) -> None:
        group.leave(trial.number)
        if reporter.history:
            trial.set_user_attr(attrs.HISTORY, reporter.history)
        fused_with = sorted(group.met[trial.number])
        if fused_with != trial.user_attrs.get(attrs.FUSED_WITH):
            trial.set_user_attr(attrs.FUSED_WITH, fused_with)
        value = None
        if isinstance(ended, BaseException):
            state = outcome.record_failure(trial, ended)
        else:
            self._store_result(trial, ended)
            state, value = TrialState.COMPLETE, float(ended.value)
        if self.tracker is not None:
            self.tracker.trial_finished(trial.number,
                                        outcome.state_word(state, outcome.ended(ended)[1]),
                                        value)
        finish(trial, state, value)

    def _train(self, trial: optuna.Trial, params: dict[str, Any]) -> float | list[float]:
        from tunecli import trainer

        reporter = self._reporter(trial, f"trial {trial.number}",
                                  self.spec if self.spec.multi_objective else None)
        try:
            with self.signals.interruptible():
                measures = objectives.before_training(trial, self.spec, params,
                                                      self.data_root)
                reporter.measures = measures
                result = trainer.run(self.spec.trainer, params, reporter,
                                     metric=self.spec.metric, direction=self.spec.direction,
                                     base_dir=self.spec.base_dir, data_root=self.data_root,
                                     checkpoint=self.checkpoint_for(trial),
                                     stop_after=self.epoch_claims.get(trial.number))
        except (optuna.TrialPruned, SpecError, TrialFailed, TrialCut, KeyboardInterrupt) as exc:
            outcome.record_failure(trial, exc)
            raise
        except Exception as exc:  # a bug in user code fails this trial, not the study
            outcome.record_failure(trial, exc)
            raise TrialFailed(f"{type(exc).__name__}: {exc}") from exc
        finally:
            if reporter.history:
                trial.set_user_attr(attrs.HISTORY, reporter.history)
        self._store_result(trial, result)
        return objectives.values_after_training(trial, self.spec, float(result.value), measures,
                                                result.train_seconds)

    @staticmethod
    def _store_result(trial: optuna.Trial, result: Any) -> None:
        trial.set_user_attr(attrs.HISTORY, result.history)
        trial.set_user_attr(attrs.BEST_EPOCH, result.best_epoch)
        trial.set_user_attr(attrs.EPOCHS_RUN, result.epochs_run)
        trial.set_user_attr(attrs.PARAMS_COUNT, result.params_count)
        trial.set_user_attr(attrs.DEVICE, result.device)
        if result.threads:
            trial.set_user_attr(attrs.THREADS, result.threads)
        trial.set_user_attr(attrs.SAMPLES_PER_SECOND, round(result.samples_per_second, 1))
        trial.set_user_attr(attrs.TRAIN_SECONDS, round(result.train_seconds, 3))
        if result.spread:  # trainer.repeats / cv: every run's value and their spread
            trial.set_user_attr(attrs.SPREAD, result.spread)


class _Group:
    """Who trains in one fused group now, and whom each member has trained alongside."""

    def __init__(self, first: int) -> None:
        self.first = first
        self.present: list[int] = []
        self.met: dict[int, set[int]] = {}
        self.reporters: dict[int, _TrialReporter] = {}

    def join(self, numbers: list[int]) -> None:
        if numbers and not self.present:  # all left: the newcomers train as a group anew
            self.first = numbers[0]
        for number in self.present:
            self.met[number].update(numbers)
        for number in numbers:
            self.met[number] = {*self.present, *numbers} - {number}
        self.present += numbers

    def leave(self, number: int) -> None:
        self.present.remove(number)
        self.relabel()

    def relabel(self) -> None:
        """The progress line's name for the group: "trials 8-15 fused x8"."""
        if self.present:
            label = f"trials {min(self.present)}-{max(self.present)} fused x{len(self.present)}"
            for number in self.present:
                self.reporters[number].label = label

_CLAIMS = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


def _claims_before(trial: optuna.Trial) -> int:
    """Finished or running trials that started before this one (this worker's race check)."""
    return sum(1 for t in trial.study.get_trials(deepcopy=False, states=_CLAIMS)
               if t.number < trial.number and not t.user_attrs.get(attrs.SURPLUS))
