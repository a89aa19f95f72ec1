"""What the function and command runners share: the trial your code is given (``OwnTrial``),
how its reported epochs become the trial's, and what is stored when it ends.

Your code reports each epoch (``trial.report(epoch, val_accuracy=0.91)``, or a JSON line);
the epoch goes through the search's one reporter, so the pruner, the time limit, the live view
and the trackers see it as a built-in trial's. A prune or a cut is raised from ``report``; a
function may let it through or poll ``should_stop``. The trial's value is what the code returns
(or prints last without an epoch), else its last report's metric.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import optuna

from tunecli import attrs
from tunecli.engine.strategy import objectives
from tunecli.errors import TrialFailed
from tunecli.spec.checks import COMMAND_FIELDS

if TYPE_CHECKING:
    from tunecli.engine.search.kit import RunnerKit
    from tunecli.engine.search.reporter import TrialReporter
    from tunecli.spec.models import StudySpec

__all__ = ["OwnTrial", "resume_epoch"]


class OwnTrial:
    """The trial your training code is given: ``params``, ``number``, ``checkpoint_dir`` (this
    configuration's folder: a retried or cut trial finds its files there), ``resume_epoch``
    (the epochs a previous attempt reported: continue after it), ``device``, ``seed``,
    ``epochs``; ``report(epoch, **metrics)`` after each epoch; ``should_stop``."""

    def __init__(self, kit: RunnerKit, trial: optuna.Trial, params: dict[str, Any]) -> None:
        self.params = dict(params)
        self.number = trial.number
        self.checkpoint_dir = kit.trial_folder(trial)
        self.resume_epoch = resume_epoch(trial)
        self.device = kit.device()
        self.seed = kit.spec.trainer.seed
        self.epochs = kit.last_epoch(trial)
        self.metric = kit.spec.metric
        self._reporter: TrialReporter = kit.reporter(trial, f"trial {trial.number}")
        self._trial = trial
        self.limit = kit.spec.trainer.trial_timeout  # seconds one trial may run
        self._started = time.monotonic()
        self.last: dict[str, float] = {}     # the last epoch's metrics
        self.stopped: BaseException | None = None  # what report raised (a prune, a cut)

    @property
    def should_stop(self) -> bool:
        """True once the pruner or the time limit stopped this trial: return now."""
        return self.stopped is not None

    def report(self, epoch: int, **metrics: float) -> None:
        """Store one finished epoch; raises ``optuna.TrialPruned`` (or the time limit's cut)
        when the trial must stop."""
        if self.stopped is not None:
            raise self.stopped
        self.last = _numbers(epoch, metrics, self.metric)
        try:
            self._reporter.report(int(epoch), self.last)
        except BaseException as exc:
            self.stopped = exc
            raise
        try:
            self.check_time(f" after epoch {epoch}")
        except TrialFailed as exc:
            self.stopped = exc
            raise

    def check_time(self, where: str = "") -> None:
        """Fail the trial once it has run past ``trainer.trial_timeout``."""
        if self.limit is not None and self.seconds > self.limit:
            raise TrialFailed(f"ran past trainer.trial_timeout ({self.limit:g} s){where}")

    @property
    def seconds(self) -> float:
        return time.monotonic() - self._started

    def finish(self, kit: RunnerKit, final: dict[str, float] | None = None
               ) -> float | list[float]:
        """The trial's value(s) once your code returned (its history stored): ``final`` metrics
        if it gave any, else its last report's; what stopped it is raised again."""
        if self.stopped is not None:
            raise self.stopped
        known = {**self.last, **(final or {})}
        trial, spec = self._trial, kit.spec
        for name, role in _needed(spec).items():
            if name not in known:
                raise TrialFailed(_no_metric(name, known, role=role))
        epochs = len(self._reporter.history)
        trial.set_user_attr(attrs.EPOCHS_RUN, self.resume_epoch + epochs)
        trial.set_user_attr(attrs.TRAIN_SECONDS, round(self.seconds, 3))
        trial.set_user_attr(attrs.DEVICE, self.device)
        if self._reporter.history:
            best = (max if spec.direction == "maximize" else min)(
                self._reporter.history, key=lambda row: row[self.metric])
            trial.set_user_attr(attrs.BEST_EPOCH, int(best["epoch"]))
        return objectives.values_after_training(trial, spec, float(known[self.metric]), {},
                                                self.seconds,
                                                {k: float(v) for k, v in known.items()})

    def store_history(self) -> None:
        if self._reporter.history:
            self._trial.set_user_attr(attrs.HISTORY, self._reporter.history)

    def environment(self) -> dict[str, str]:
        """What a command is told about its trial, as environment variables."""
        import json

        return {"TUNECLI_PARAMS": json.dumps(self.params), "TUNECLI_TRIAL": str(self.number),
                "TUNECLI_TRIAL_DIR": str(self.checkpoint_dir),
                "TUNECLI_RESUME_EPOCH": str(self.resume_epoch), "TUNECLI_DEVICE": self.device,
                "TUNECLI_SEED": str(self.seed), "TUNECLI_EPOCHS": str(self.epochs),
                "TUNECLI_METRIC": self.metric}

    def fields(self) -> dict[str, Any]:
        """What a command's ``{name}`` placeholders may name: the parameters, and
        ``COMMAND_FIELDS`` (the names the spec's checks accept), in that tuple's order."""
        values = (str(self.checkpoint_dir), self.number, self.resume_epoch, self.epochs,
                  self.device, self.seed)
        return {**self.params, **dict(zip(COMMAND_FIELDS, values, strict=True))}


def resume_epoch(trial: optuna.Trial) -> int:
    """The epochs the attempt this trial retries had reported (0 for a fresh trial)."""
    replaces = trial.user_attrs.get(attrs.REPLACES)
    if replaces is None:
        return 0
    for earlier in trial.study.get_trials(deepcopy=False):
        if earlier.number == replaces:
            if earlier.intermediate_values:
                return max(earlier.intermediate_values)
            return int(earlier.user_attrs.get(attrs.EPOCHS_DONE, 0))
    return 0


def _numbers(epoch: Any, metrics: dict[str, Any], metric: str) -> dict[str, float]:
    """The epoch's metrics as floats; bad ones fail the trial with what was wrong."""
    if isinstance(epoch, bool) or not isinstance(epoch, int | float) or epoch < 1:
        raise TrialFailed(f"epoch {epoch!r} is not a whole number from 1")
    values: dict[str, float] = {}
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TrialFailed(f"epoch {epoch}: {name}={value!r} is not a number")
        values[name] = float(value)
    if metric not in values:
        raise TrialFailed(_no_metric(metric, values, epoch))
    return values


def _needed(spec: StudySpec) -> dict[str, str]:
    """The metrics a finished trial must have given, each with what the study uses it for
    (``train_seconds`` is measured here)."""
    needed = {spec.metric: "the metric the study ranks by"}
    for name in spec.objective_names[1:]:
        needed.setdefault(name, "an objective of the study")
    for constraint in spec.parsed_constraints():
        needed.setdefault(constraint.name, f"bound by the constraint '{constraint}'")
    needed.pop(attrs.TRAIN_SECONDS, None)
    return needed


def _no_metric(metric: str, reported: dict[str, Any], epoch: Any = None,
               role: str = "the metric the study ranks by") -> str:
    where = f"epoch {epoch} reported" if epoch is not None else "it reported"
    got = ", ".join(sorted(reported)) or "no metric"
    return (f"{where} {got} but not {metric!r}, {role}: report it "
            f"(trial.report(epoch, {metric}=...) or a JSON line {{\"epoch\": 1, "
            f"\"{metric}\": ...}}), or name one of those in the study file")
