"""The one trial driver: ask Optuna for trials, hand them to runners, tell Optuna how each ended.

Every trial takes one path, whatever trains it: asked (``_Round.ask``), given its place in the
budget (``budget.take_slot``: a lost race makes it surplus), sampled, handed to a runner
(``runners``: the contract), reported epoch by epoch through one reporter, and told through
``outcome.tell`` as soon as it ends, followed by its line in the live view. A round is one trial,
or up to K of one structure once fusion may group them (``runners.group``). The budget, the time
limit and the failure limit are counted in ``budget``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import optuna
from optuna.trial import FrozenTrial, TrialState

from tunecli import attrs
from tunecli.engine.search import outcome, runners
from tunecli.engine.search.budget import Budget, Surplus, epochs_spent, slots_left, take_slot
from tunecli.engine.search.kit import RunnerKit
from tunecli.engine.search.runners import group
from tunecli.engine.search.signals import StopSignals
from tunecli.engine.search.studies import best_trial
from tunecli.engine.store import optuna_internals
from tunecli.engine.store import storage as storage_module
from tunecli.engine.store.recovery import (
    LAPSE_BEATS,
    LEASE_EVERY,
    count_trials,
    is_lost,
    leased_elsewhere,
    queue_retries,
    reap_lost_trials,
)
from tunecli.engine.store.storage import quiet_optuna
from tunecli.engine.strategy import samplers, space
from tunecli.engine.strategy.objectives import primary
from tunecli.engine.tracking import Tracking
from tunecli.errors import StudyFailed
from tunecli.spec.models import StudySpec

__all__ = ["LiveView", "SearchOutcome", "run_search"]


class LiveView(Protocol):
    """What the driver tells the face while it runs (``reports.live.SearchProgress``)."""

    def update(self, counts: dict[str, int], best: tuple[float, dict[str, Any]] | None,
               epochs: tuple[int, int] | None) -> None: ...

    def epoch(self, label: str, epoch: int, epochs: int, value: float | None) -> None: ...

    def trial_done(self, number: int, state: str, value: float | None,
                   params: dict[str, Any], seconds: float, note: str) -> None: ...


@dataclass
class SearchOutcome:
    study: optuna.Study
    counts: dict[str, int]
    stopped_by: str                # budget | timeout | grid | interrupted | failures | elsewhere
    failures_this_run: int = 0
    last_failure: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def run_search(study: optuna.Study, spec: StudySpec, url: str, view: LiveView,
               say: Callable[[str], None], *, data_root: str | None = None,
               keep_checkpoints: str = "best", checkpoints: bool = True,
               tracking: Tracking | None = None) -> SearchOutcome:
    """Run trials until the budget is met, the timeout passes, or the user interrupts.

    ``say``: a line for the user (the plan, a tracker's warning); ``tracking``: TensorBoard and
    W&B runs, one per trial (see ``tracking``)."""
    quiet_optuna()
    reap_lost_trials(study)
    folder = storage_module.study_folder(url, spec.name) / "checkpoints" if checkpoints else None
    signals = StopSignals()
    tracker = tracking.open(spec.name, spec.metric, lambda text: say(f"warning: {text}")) \
        if tracking else None
    kit = RunnerKit(spec, data_root, folder, signals, Budget(spec), tracker)
    epochs = spec.trainer.epochs
    kit.on_epoch = lambda label, epoch, value: view.epoch(label, epoch, epochs, value)
    with signals:
        search = _Search(study, kit, view, say, _TrialLog(kit, keep_checkpoints, view))
        stopped_by = search.run()
        if stopped_by == "interrupted" or search.log.cut:
            queue_retries(study)
        counts = count_trials(study.get_trials(deepcopy=False))
    log = search.log
    if stopped_by != "interrupted" and counts["complete"] == 0 and kit.budget.failures:
        raise StudyFailed(f"no trial completed; {kit.budget.failures} failed, the last because: "
                          f"{log.last_failure}")
    if stopped_by == "failures":
        raise StudyFailed(f"stopped after {kit.budget.failures} failed trials "
                          f"(budget.max_failures is {spec.budget.max_failures}); the last "
                          f"failed because: {log.last_failure}")
    return SearchOutcome(study, counts, stopped_by, kit.budget.failures, log.last_failure,
                         {"cut": log.cut})


class _TrialLog:
    """After each trial is told: its line in the live view, the run's failure count,
    checkpoint tidying."""

    def __init__(self, kit: RunnerKit, keep_checkpoints: str, view: LiveView) -> None:
        self.kit = kit
        self.keep = keep_checkpoints
        self.view = view
        self.last_failure = ""
        self.cut = 0                # trials stopped by the time limit, to be continued

    def __call__(self, study: optuna.Study, frozen: FrozenTrial) -> None:
        if frozen.user_attrs.get(attrs.SURPLUS):
            return
        seconds = frozen.duration.total_seconds() if frozen.duration else 0.0
        state = outcome.state_word(frozen.state, frozen.user_attrs.get(attrs.FAIL_REASON))
        if state == "fail" and not is_lost(frozen):
            self.kit.budget.failures += 1
            self.last_failure = str(frozen.user_attrs.get(attrs.FAIL_REASON, "unknown error"))
        self.cut += state == "cut"
        note = self._note(frozen, state)
        value = primary(frozen) if frozen.state == TrialState.COMPLETE else None
        self.view.trial_done(frozen.number, state, value, frozen.params, seconds, note)
        _tidy_checkpoints(study, self.kit, frozen, self.keep)

    def _note(self, frozen: FrozenTrial, state: str) -> str:
        note = ""
        if state == "cut":
            note = f"after epoch {len(frozen.intermediate_values)}: tunecli resume continues it"
        elif state == "fail" and not is_lost(frozen):
            note = self.last_failure
        elif frozen.state == TrialState.PRUNED and frozen.user_attrs.get(attrs.INFEASIBLE):
            note = f"infeasible, not trained: {frozen.user_attrs[attrs.INFEASIBLE]}"
        elif frozen.state == TrialState.PRUNED:
            last = frozen.last_step  # a multi-objective trial counts its own epochs
            epochs = frozen.user_attrs.get(attrs.EPOCHS_DONE) if last is None else last
            note = f"after epoch {epochs}"
        if frozen.values and len(frozen.values) > 1:  # the measure objectives: params=2931
            names = self.kit.spec.objective_names[1:]
            note = " ".join(f"{n}={v:.4g}" for n, v in zip(names, frozen.values[1:],
                                                           strict=True))
        fused = frozen.user_attrs.get(attrs.FUSED_WITH)
        if fused:
            numbers = sorted([frozen.number, *fused])
            note += f"{' ' if note else ''}(fused x{len(numbers)}: trials "\
                    f"{numbers[0]}-{numbers[-1]})"
        return note


class _Search:
    """One run's loop: a round at a time until a reason to stop."""

    def __init__(self, study: optuna.Study, kit: RunnerKit, view: LiveView,
                 say: Callable[[str], None], log: _TrialLog) -> None:
        self.study, self.kit, self.spec = study, kit, kit.spec
        self.view, self.say, self.log = view, say, log
        self.plan = group.fuse_plan(self.spec, runners.device_type(self.spec))
        # Fused rounds fix a structure for K trials: they begin once the sampler's model
        # guides it. Its startup trials stay diverse, one at a time, as it drew them (anchoring
        # 8 of 10 exploratory trials to one structure measurably slowed the search down).
        self.startup = samplers.startup_trials(self.spec)
        self.said_too_large = False
        self.said_waiting = False
        for line in runners.plan_lines(self.spec, self.plan, self.startup):
            say(line)

    def run(self) -> str:
        """Rounds until the budget, the timeout, the grid or the failure limit stops the run
        (or a signal): why it stopped."""
        while True:
            if self.kit.signals.requested:  # a signal between trials
                return "interrupted"
            trials = self.study.get_trials(deepcopy=False)
            self._show(trials)
            stopped_by = self.kit.budget.reason_to_stop(self.study, trials)
            watched = leased_elsewhere(trials) if stopped_by == "elsewhere" else 0
            if watched:
                if self._wait_for_others(watched):
                    return "interrupted"
                continue
            if stopped_by:
                return stopped_by
            try:
                _Round(self, self._round_size()).run()
            except KeyboardInterrupt:
                return "interrupted"

    def _wait_for_others(self, running: int) -> bool:
        """The last trials run in other processes that renew leases: wait a renewal's time
        (whether a signal came), so a machine that dies has its trial retried here."""
        if not self.said_waiting:
            self.said_waiting = True
            self.say(f"waiting for {running} trial{'s' * (running != 1)} running elsewhere: "
                     f"one whose machine stops renewing its lease for "
                     f"{LAPSE_BEATS * LEASE_EVERY:.0f} s is retried here")
        deadline = time.monotonic() + LEASE_EVERY / 2
        while time.monotonic() < deadline:
            if self.kit.signals.requested:
                return True
            time.sleep(0.1)
        return False

    def _show(self, trials: list[FrozenTrial]) -> None:
        """The counts, the best so far and the epochs spent, in the live view."""
        best = best_trial(self.study)
        epochs = self.spec.budget.epochs
        self.view.update(count_trials(trials), (best.values[0], best.params)
                         if best is not None and best.values else None,
                         (epochs_spent(trials), epochs) if epochs is not None else None)

    def _round_size(self) -> int:
        """1, or the plan's K once the sampler's startup trials are done; never more trials
        than failures are still tolerated."""
        if self.plan.k == 1:
            return 1
        if self.startup:
            finished = count_trials(self.study.get_trials(deepcopy=False))["finished"]
            self.startup = 0 if finished >= self.startup else self.startup
        return 1 if self.startup else min(self.plan.k, self.kit.budget.failures_left())

    def too_large(self, why: str) -> None:
        """A round's model is too large for auto to fuse: said for the first such round only
        (most rounds of a wide space would say it again)."""
        if not self.said_too_large:
            self.said_too_large = True
            self.say(why)

    def unfusable(self, why: str) -> None:
        """The user model cannot be fused: said once, and the rest train one at a time."""
        self.say(runners.one_at_a_time(why))
        self.plan = group.FusePlan(1, why_alone=why)


Member = runners.Member


class _Round:
    """One round: its trials asked, grouped by ``group.Grouping`` when K > 1, each group handed
    to its runner, each trial told as it ends."""

    def __init__(self, search: _Search, k: int) -> None:
        self.search, self.kit, self.study = search, search.kit, search.study
        self.open_trials: dict[int, optuna.Trial] = {}  # asked and not yet told
        self.handed: set[int] = set()                    # open trials a runner trains
        self.grouping = group.Grouping(self.kit, group.with_k(search.plan, k),
                                       search.unfusable, search.too_large)

    def run(self) -> None:
        try:
            optuna.storages.fail_stale_trials(self.study)  # as study.optimize does per trial
            members, later = self.grouping.ask_round(self.ask)
            with optuna_internals.heartbeats(
                    self.study, lambda: list(self.open_trials.copy().values()), LEASE_EVERY):
                # The round's own members, then those a refill asked that could not join.
                for asked in (members, later):
                    for trials in self.grouping.split(asked):
                        self._hand(trials)
        except BaseException as exc:
            self._end_open(exc, list(self.open_trials))
            raise

    def ask(self, fixed: dict[str, Any] | None = None) -> Member | None:
        """A new trial, with ``fixed`` parameters unless another is waiting; its parameters
        (None: the budget is spent, or another worker took the slot)."""
        trials = self.study.get_trials(deepcopy=False)
        if slots_left(trials, self.kit.spec) <= 0:
            return None
        if fixed is not None and not any(t.state == TrialState.WAITING for t in trials):
            self.study.enqueue_trial(fixed, skip_if_exists=False)
        trial = optuna_internals.ask(self.study)
        self.open_trials[trial.number] = trial
        try:
            trial.set_user_attr(attrs.WORKER, self.kit.worker)
            epochs = take_slot(trial, self.kit.spec)
        except Surplus as exc:
            self.finish(trial, exc)
            return None
        if epochs is not None:
            self.kit.epoch_claims[trial.number] = epochs
        return trial, space.suggest(trial, self.kit.spec.space)

    def finish(self, trial: optuna.Trial, ended: outcome.Ended) -> None:
        """Tell Optuna how ``trial`` ended, at once, while the rest of its group trains on."""
        if trial.number in self.handed:
            self.kit.finished(trial, ended)
        frozen = outcome.tell(self.study, trial, ended, self.kit.signals)
        self.open_trials.pop(trial.number, None)
        self.handed.discard(trial.number)
        self.search.log(self.study, frozen)

    def _hand(self, members: list[Member]) -> None:
        """Train ``members`` with their runner; what stops a runner fails its open trials, and
        the search too where it must (bad input, a signal)."""
        leads = self.grouping.leads(members)
        runner = runners.runner_for(self.kit, members, leads)

        def begin(joining: list[Member]) -> list[Member]:
            for trial, _ in joining:
                self.handed.add(trial.number)
                self.kit.begin(trial)
            return joining

        try:
            runner(self.kit, begin(members), self.finish,
                   (lambda free: begin(self._refill(free))) if leads else None,
                   self.grouping.plan.k)
        except BaseException as exc:
            if outcome.stops_search(exc):
                raise
            self._end_open(exc, list(self.handed))

    def _refill(self, free: int) -> list[Member]:
        """Trials to join the leading group in ``free`` slots (the live view is refreshed)."""
        self.search._show(self.study.get_trials(deepcopy=False))
        return self.grouping.refill(free, self.kit.budget.room, self.ask)

    def _end_open(self, exc: BaseException, numbers: list[int]) -> None:
        for number in numbers:
            trial = self.open_trials.get(number)
            if trial is not None:
                self.finish(trial, exc)


def _tidy_checkpoints(study: optuna.Study, kit: RunnerKit, frozen: FrozenTrial,
                      keep: str) -> None:
    """Finished trials need no checkpoint; keep them all, the best's only, or none."""
    if kit.checkpoints is None or keep == "all":
        return
    path = kit.checkpoint_for(frozen)
    if path is None or is_lost(frozen):
        return  # a lost trial's checkpoint is what its retry continues from
    best = best_trial(study)
    best_path = kit.checkpoint_for(best) if best is not None else None
    if keep == "best" and frozen.state == TrialState.COMPLETE and path == best_path:
        pattern = "trial-*.pt" if kit.spec.trainer.kind == "builtin" else "trial-*"
        for old in kit.checkpoints.glob(pattern):
            if old != path and not _is_pending(study, old):
                _remove(old)
        return
    _remove(path)


def _remove(path: Path) -> None:
    """A checkpoint file, or your own code's trial folder."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _is_pending(study: optuna.Study, checkpoint: Path) -> bool:
    number = int(checkpoint.stem.split("-")[1])
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        if t.user_attrs.get(attrs.RETRY_OF, t.number) == number:
            return True
    return False
