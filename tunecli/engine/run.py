"""The run loop: trials until the budget is met, the timeout passes, or the user interrupts.

Budget: ``n_trials`` counts *finished* trials (complete + pruned) in the storage, over every run
and every worker, so a resumed study ends with exactly that many. Before each trial a worker
checks the count (running trials included, as claims); a worker that loses a race to another
marks its surplus trial failed with ``surplus`` set, which reports leave out.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.markup import escape

from tunecli import attrs
from tunecli.engine import compute, fusing, outcome, samplers
from tunecli.engine import storage as storage_module
from tunecli.engine.objective import Objective, Surplus
from tunecli.engine.objectives import primary
from tunecli.engine.progress import SearchProgress
from tunecli.engine.recovery import count_trials, is_lost, queue_retries, reap_lost_trials
from tunecli.engine.samplers import grid_exhausted
from tunecli.engine.signals import StopSignals
from tunecli.engine.study import best_trial, quiet_optuna
from tunecli.engine.tracking import Tracking
from tunecli.errors import StudyFailed, TrialCut, TrialFailed
from tunecli.spec.models import StudySpec

__all__ = ["RunOutcome", "run"]


@dataclass
class RunOutcome:
    study: optuna.Study
    counts: dict[str, int]
    stopped_by: str                # budget | timeout | grid | interrupted | failures | elsewhere
    failures_this_run: int = 0
    last_failure: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# The run loop


class _TrialLog:
    """After each trial: its line in the progress, the run's failure count, checkpoint tidying."""

    def __init__(self, objective: Objective, keep_checkpoints: str,
                 progress: SearchProgress) -> None:
        self.objective = objective
        self.keep = keep_checkpoints
        self.progress = progress
        self.failures = 0
        self.last_failure = ""
        self.cut = 0                # trials stopped by the time limit, to be continued

    def __call__(self, study: optuna.Study, frozen: FrozenTrial) -> None:
        if frozen.user_attrs.get(attrs.SURPLUS):
            return
        seconds = frozen.duration.total_seconds() if frozen.duration else 0.0
        note = ""
        reason = frozen.user_attrs.get(attrs.FAIL_REASON)
        state = outcome.state_word(frozen.state, reason)
        if state == "cut":
            self.cut += 1
            note = f"after epoch {len(frozen.intermediate_values)}: tunecli resume continues it"
        elif frozen.state == TrialState.FAIL and not is_lost(frozen):
            self.failures += 1
            self.last_failure = str(frozen.user_attrs.get(attrs.FAIL_REASON, "unknown error"))
            note = self.last_failure
        elif frozen.state == TrialState.PRUNED and frozen.user_attrs.get(attrs.INFEASIBLE):
            note = f"infeasible, not trained: {frozen.user_attrs[attrs.INFEASIBLE]}"
        elif frozen.state == TrialState.PRUNED:
            last = frozen.last_step  # a multi-objective trial counts its own epochs
            epochs = frozen.user_attrs.get(attrs.EPOCHS_DONE) if last is None else last
            note = f"after epoch {epochs}"
        if frozen.values and len(frozen.values) > 1:  # the measure objectives: params=2931
            names = self.objective.spec.objective_names[1:]
            note = " ".join(f"{n}={v:.4g}" for n, v in zip(names, frozen.values[1:],
                                                           strict=True))
        group = frozen.user_attrs.get(attrs.FUSED_WITH)
        if group:
            numbers = sorted([frozen.number, *group])
            note += f"{' ' if note else ''}(fused x{len(numbers)}: trials "\
                    f"{numbers[0]}-{numbers[-1]})"
        value = primary(frozen) if frozen.state == TrialState.COMPLETE else None
        self.progress.trial_done(frozen.number, state, value,
                                 frozen.params, seconds, note)
        _tidy_checkpoints(study, self.objective, frozen, self.keep)


def run(study: optuna.Study, spec: StudySpec, url: str, console: Console, *,
        data_root: str | None = None, keep_checkpoints: str = "best",
        checkpoints: bool = True, tracking: Tracking | None = None) -> RunOutcome:
    """Run trials until the budget is met, the timeout passes, or the user interrupts.

    ``tracking``: TensorBoard and W&B runs, one per trial (see ``tracking``).
    """
    quiet_optuna()
    reap_lost_trials(study)
    folder = storage_module.study_folder(url, spec.name) / "checkpoints" if checkpoints else None
    signals = StopSignals()
    tracker = tracking.open(spec.name, spec.metric, lambda text: console.print(
        f"[yellow]warning:[/] {escape(text)}", highlight=False, soft_wrap=True)) \
        if tracking else None
    objective = Objective(spec, data_root, folder, signals, tracker)
    finished = count_trials(study.get_trials(deepcopy=False))["finished"]
    with SearchProgress(console, spec.name, spec.metric, spec.budget.n_trials,
                        spec.budget.timeout, finished) as progress, signals:
        search = _Search(study, objective, console, progress,
                         _TrialLog(objective, keep_checkpoints, progress))
        stopped_by = search.run()
        if stopped_by == "interrupted" or search.log.cut:
            queue_retries(study)
        counts = count_trials(study.get_trials(deepcopy=False))
    log = search.log
    if stopped_by != "interrupted" and counts["complete"] == 0 and log.failures:
        raise StudyFailed(f"no trial completed; {log.failures} failed, the last because: "
                          f"{log.last_failure}")
    if stopped_by == "failures":
        raise StudyFailed(f"stopped after {log.failures} failed trials (budget.max_failures "
                          f"is {spec.budget.max_failures}); the last failed because: "
                          f"{log.last_failure}")
    return RunOutcome(study, counts, stopped_by, log.failures, log.last_failure,
                      {"cut": log.cut})


class _Search:
    """One run's loop: a trial (or a fused round) at a time until a reason to stop."""

    def __init__(self, study: optuna.Study, objective: Objective, console: Console,
                 progress: SearchProgress, log: _TrialLog) -> None:
        self.study, self.objective, self.spec = study, objective, objective.spec
        self.console, self.progress, self.log = console, progress, log
        self.started = time.monotonic()
        budget = self.spec.budget
        if budget.timeout is not None:
            objective.deadline = self.started + budget.timeout
        epochs = self.spec.trainer.epochs
        objective.on_epoch = lambda label, epoch, value: progress.epoch(label, epoch, epochs,
                                                                         value)
        self.plan = fusing.fuse_plan(self.spec, _device_type(self.spec))
        # Fused rounds fix a structure for K trials: they begin once the sampler's model
        # guides it. Its startup trials stay diverse, one at a time, as it drew them (anchoring
        # 8 of 10 exploratory trials to one structure measurably slowed the search down).
        self.startup = samplers.startup_trials(self.spec)
        self.said_too_large = False
        self._say_plan()

    def _say_plan(self) -> None:
        if _device_type(self.spec) == "cpu":
            from tunecli.trainer import threads

            self.console.print(escape(threads.describe(self.spec.trainer.threads)),
                               highlight=False, soft_wrap=True)
        if self.plan.why_alone:
            self._alone(self.plan.why_alone)
        elif self.plan.k > 1:
            after = self.startup
            self.console.print(f"fused trials: up to {self.plan.k} configurations train "
                               "together as one batched model"
                               + (f" after the sampler's {after} startup trials" if after
                                  else "") + " (--fuse 1 turns it off)", highlight=False)

    def _alone(self, why: str) -> None:
        self.console.print(f"trials train one at a time: {escape(why)}", highlight=False,
                           soft_wrap=True)

    def run(self) -> str:
        """Trials until the budget, the timeout, the grid or the failure limit stops the run
        (or a signal): why it stopped."""
        while True:
            if self.objective.signals.requested:  # a signal between trials
                return "interrupted"
            stopped_by = _reason_to_stop(self.study, self.spec, self.progress,
                                         self.log.failures, time.monotonic() - self.started)
            if stopped_by:
                return stopped_by
            try:
                self._next()
            except KeyboardInterrupt:
                return "interrupted"

    def _next(self) -> None:
        """One trial, or one fused round once the sampler's startup trials are done."""
        if self.startup and self.plan.k > 1:
            finished = count_trials(self.study.get_trials(deepcopy=False))["finished"]
            self.startup = 0 if finished >= self.startup else self.startup
        if self.plan.k > 1 and not self.startup:
            # A round holds no more trials than failures are still tolerated, so a run stops
            # at exactly max_failures + 1 failed trials, fused or not.
            k = min(self.plan.k, self.spec.budget.max_failures - self.log.failures + 1)
            fusing.run_round(self.study, self.objective, dataclasses.replace(self.plan, k=k),
                             self.log, self.objective.signals, self.room, self.unfusable,
                             self.too_large)
        else:
            self.study.optimize(self.objective, n_trials=1,
                                catch=(TrialFailed, Surplus, TrialCut), callbacks=[self.log],
                                gc_after_trial=False)

    def room(self, in_flight: int) -> float:
        """Trials a fused group may still take in: none once the timeout has passed, and no
        more than failures are still tolerated (refreshes the progress)."""
        budget = self.spec.budget
        if budget.timeout is not None and time.monotonic() - self.started >= budget.timeout:
            return 0
        _show_progress(self.study, self.spec, self.progress,
                       self.study.get_trials(deepcopy=False))
        return budget.max_failures - self.log.failures + 1 - in_flight

    def too_large(self, why: str) -> None:
        """A round's model is too large for auto to fuse: said for the first such round only
        (most rounds of a wide space would say it again)."""
        if not self.said_too_large:
            self.said_too_large = True
            self.console.print(escape(why), highlight=False, soft_wrap=True)

    def unfusable(self, why: str) -> None:
        """The user model cannot be fused: said once, and the rest train one at a time."""
        self._alone(why)
        self.plan = fusing.FusePlan(1, why_alone=why)


def _epochs_in_use(study: optuna.Study, spec: StudySpec) -> int:
    return compute.epochs_in_use(study.get_trials(deepcopy=False), spec.trainer.epochs)


def _device_type(spec: StudySpec) -> str:
    from tunecli.trainer.loop import resolve_device

    return resolve_device(spec.trainer.device).type


def _show_progress(study: optuna.Study, spec: StudySpec, progress: SearchProgress,
                   trials: list[FrozenTrial]) -> tuple[dict[str, int], int]:
    """The counts, the best so far and the epochs spent, shown; the counts and epochs."""
    budget = spec.budget
    counts = count_trials(trials)
    best = best_trial(study)
    spent = compute.epochs_spent(trials)
    progress.update(counts, (best.values[0], best.params)
                    if best is not None and best.values else None,
                    (spent, budget.epochs) if budget.epochs is not None else None)
    return counts, spent


def _reason_to_stop(study: optuna.Study, spec: StudySpec, progress: SearchProgress,
                    failures: int, elapsed: float) -> str:
    """Why the run stops before another trial ("" to go on); refreshes the progress."""
    budget = spec.budget
    trials = study.get_trials(deepcopy=False)
    counts, spent = _show_progress(study, spec, progress, trials)
    if budget.epochs is not None:
        if spent >= budget.epochs:
            return "budget"
        if _epochs_in_use(study, spec) >= budget.epochs:
            # What is left is claimed by running trials: elsewhere, unless their worker died.
            reap_lost_trials(study)
            if _epochs_in_use(study, spec) >= budget.epochs:
                return "elsewhere"
    finished = counts["finished"]
    if budget.n_trials is not None and finished >= budget.n_trials:
        return "budget"
    if budget.n_trials is not None and finished + counts["running"] >= budget.n_trials:
        # The last trials run elsewhere, unless their worker died: then retry them here.
        reap_lost_trials(study)
        running = count_trials(study.get_trials(deepcopy=False))["running"]
        if finished + running >= budget.n_trials:
            return "elsewhere"
    if budget.timeout is not None and elapsed >= budget.timeout:
        return "timeout"
    if grid_exhausted(study):
        return "grid"
    if failures > budget.max_failures:
        return "failures"
    return ""


def _tidy_checkpoints(study: optuna.Study, objective: Objective, frozen: FrozenTrial,
                      keep: str) -> None:
    """Finished trials need no checkpoint; keep them all, the best's only, or none."""
    if objective.checkpoints is None or keep == "all":
        return
    path = objective.checkpoint_for(frozen)
    if path is None or is_lost(frozen):
        return  # a lost trial's checkpoint is what its retry continues from
    best = best_trial(study)
    best_path = objective.checkpoint_for(best) if best is not None else None
    if keep == "best" and frozen.state == TrialState.COMPLETE and path == best_path:
        for old in objective.checkpoints.glob("trial-*.pt"):
            if old != path and not _is_pending(study, old):
                old.unlink(missing_ok=True)
        return
    path.unlink(missing_ok=True)


def _is_pending(study: optuna.Study, checkpoint: Path) -> bool:
    number = int(checkpoint.stem.split("-")[1])
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        if t.user_attrs.get(attrs.RETRY_OF, t.number) == number:
            return True
    return False
