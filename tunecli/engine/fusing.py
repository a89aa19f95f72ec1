"""Rounds of fused trials: ask K trials, train those of one structure together, tell each.

How K is chosen (``trainer.fuse``): 1 turns fusion off; a number is taken as given; ``auto``
fuses the built-in MLP and CNN where a round's first model is small enough to gain
(measured in ``benchmarks/fused_trials.py``), with K from the device; a user model fuses only
when K is given, through ``torch.func``, once a probe shows ``vmap`` can run it.

Grouping: the round's first fresh trial is sampled freely; the later ones are asked with its
shared settings (depth, batch size, optimizer, activation, batch norm, Nesterov: what one
stacked model must share) fixed through Optuna's ``enqueue_trial``, and the sampler chooses
everything else (learning rate, width, dropout, decay, ...) as usual. Trials that still differ
(a retry that continues its checkpoint, a trial another worker queued, an optimizer that is not
fused) train alone. Every member is a whole Optuna trial: it counts against the budget,
reports each epoch, may be pruned, and is stored as soon as it leaves its group.

Refills: as members leave (pruned, finished, failed), the freed slots go to new trials asked
the same way, which join the stacked model at the epoch boundary; a group takes up to
``REFILLS`` x K trials in all, so later rounds still sample new structures.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tunecli.engine import compute, optuna_internals, outcome
from tunecli.engine.objective import Objective, Surplus
from tunecli.engine.recovery import count_trials
from tunecli.engine.signals import StopSignals
from tunecli.errors import TrialCut, TrialFailed

if TYPE_CHECKING:
    from tunecli.spec.models import StudySpec

__all__ = ["FusePlan", "FusedRound", "fuse_plan", "run_round"]

# auto, per device kind: K, and the most work per step (weights x batch size, about one
# step's multiply-adds per member) worth fusing. Above it one trial's matrix products already
# keep the device busy, and a fused group is little or no faster than its members one after
# another, while it fixes their structure (benchmarks/README.md, 2 CPU cores: every measured
# configuration up to 3.3M gained 1.9-4.6x, every one from 8.6M on 0.8-1.3x, e.g. a 2 x 128
# Fashion-MNIST MLP at batch 128, 15M: 1.3x). CUDA's limit is a first guess, not yet measured.
# A group is refilled as members leave until it has taken this many times K trials: pruning
# empties a group within a few epochs, and a group of one or two trains barely faster than
# its members alone; the bound keeps a search trying new structures (measured in
# benchmarks/README.md).
REFILLS = 3
_AUTO = {"cpu": (8, 4_000_000), "cuda": (16, 2_500_000_000)}


@dataclass(frozen=True)
class FusePlan:
    """How this run groups trials: up to ``k`` per group; under ``auto`` a round whose first
    configuration does more than ``max_work`` per step (weights x batch size) trains alone."""

    k: int
    max_work: int | None = None
    why_alone: str = ""        # why trials train one at a time, when they all do
    admit: int = 0             # trials one group takes in all, refills included (k > 1 only)
    device: str = "cpu"        # the device kind max_work was measured for


def fuse_plan(spec: StudySpec, device_type: str) -> FusePlan:
    fuse = spec.trainer.fuse
    if fuse == 1:
        return FusePlan(1)
    from tunecli.trainer.fusion import why_not_fused

    why = why_not_fused(spec.trainer, {})
    if spec.multi_objective or spec.constraints:  # measured and checked per trial, alone
        why = "studies with several objectives or constraints are trained one at a time"
    if spec.sampler.type == "grid":  # a round fixes its members' structure; grid points are set
        why = "the grid sampler is run one trial at a time"
    if why:
        return FusePlan(1, why_alone=why)
    if fuse != "auto":
        return FusePlan(int(fuse), admit=int(fuse) * REFILLS)
    k, max_work = _AUTO.get(device_type, _AUTO["cpu"])
    return FusePlan(k, max_work, admit=k * REFILLS, device=device_type)


Finish = Callable[[optuna.Trial, TrialState, "float | list[float] | None"], None]
Member = tuple[optuna.Trial, dict[str, Any]]


def run_round(study: optuna.Study, objective: Objective, plan: FusePlan,
              log: Callable[[optuna.Study, FrozenTrial], None], signals: StopSignals,
              room: Callable[[int], float] = lambda in_flight: math.inf,
              unfusable: Callable[[str], None] = lambda why: None,
              too_large: Callable[[str], None] = lambda why: None) -> None:
    """Ask up to ``plan.k`` trials (never past the budget), train them, tell each one; refill
    the group as members leave, up to ``plan.admit`` trials in all.

    ``room(in_flight)``: how many more trials may start while ``in_flight`` train (the run's
    timeout and failure limit; 0 stops the refills). ``unfusable(why)``: the user model
    cannot be fused through torch.func (this round's trial then trains alone).
    ``too_large(why)``: this round's first configuration does too much work per step for
    ``auto`` to fuse it, so it trains alone."""
    FusedRound(study, objective, plan, log, signals, room, unfusable, too_large).run()


class FusedRound:
    """One round: its trials, the anchor (the first fresh trial, whose structure the group
    takes), the settings fixed for later members and how many trials the group admitted."""

    def __init__(self, study: optuna.Study, objective: Objective, plan: FusePlan,
                 log: Callable[[optuna.Study, FrozenTrial], None], signals: StopSignals,
                 room: Callable[[int], float], unfusable: Callable[[str], None],
                 too_large: Callable[[str], None] = lambda why: None) -> None:
        self.study, self.objective, self.plan = study, objective, plan
        self.log, self.signals, self.room, self.unfusable = log, signals, room, unfusable
        self.too_large = too_large
        self.open_trials: dict[int, optuna.Trial] = {}  # asked and not yet told
        self.members: list[Member] = []
        self.later: list[Member] = []    # asked to join the group but of another structure
        self.anchor: dict[str, Any] | None = None
        self.fixed: dict[str, Any] | None = None
        self.admitted = 0
        self.refilling = False           # the anchor's group takes new trials as members leave

    def run(self) -> None:
        try:
            self._ask_members()
            with optuna_internals.heartbeats(
                    self.study, lambda: list(self.open_trials.copy().values())):
                # The round's own members, then those a refill asked that could not join.
                for asked in (self.members, self.later):
                    for group in _groups(self.objective, asked):
                        self._train(group)
        except BaseException as exc:
            for trial in list(self.open_trials.values()):
                self.finish(trial, outcome.record_failure(trial, exc), None)
            raise

    def finish(self, trial: optuna.Trial, state: TrialState,
               value: float | list[float] | None) -> None:
        """Tell Optuna how ``trial`` ended, at once, while the rest of its group trains on."""
        with self.signals.held():  # a signal must not cut a storage write in half
            frozen = self.study.tell(trial, value if state == TrialState.COMPLETE else None,
                                     state=None if state == TrialState.COMPLETE else state)
        self.open_trials.pop(trial.number, None)
        self.log(self.study, frozen)

    def ask(self, fixed: dict[str, Any] | None) -> Member | None:
        """A new trial, with ``fixed`` parameters unless another is waiting (None: the budget
        is spent, or another worker took the slot)."""
        trials = self.study.get_trials(deepcopy=False)
        if _slots_left(trials, self.objective.spec) <= 0:
            return None
        if fixed is not None and not any(t.state == TrialState.WAITING for t in trials):
            self.study.enqueue_trial(fixed, skip_if_exists=False)
        trial = optuna_internals.ask(self.study)
        self.open_trials[trial.number] = trial
        try:
            return trial, self.objective.start(trial)
        except Surplus:
            self.finish(trial, TrialState.FAIL, None)
            return None

    def refill(self, free: int) -> list[Member]:
        """Trials to join the anchor's group in ``free`` slots at an epoch boundary."""
        joining: list[Member] = []
        free = int(min(free, self.plan.admit - self.admitted, self.room(self.plan.k - free)))
        while len(joining) < free and not self.signals.requested and not self.later:
            member = self.ask(self.fixed)
            if member is None:
                break
            if _joins(self.objective, member, self.anchor):
                joining.append(member)
                self.admitted += 1
            else:
                self.later.append(member)
        return joining

    def _ask_members(self) -> None:
        """Up to K trials: the first sampled freely, the rest with the anchor's structure."""
        k = self.plan.k
        while len(self.members) < k:
            member = self.ask(self.fixed) if self.members else self.ask(None)
            if member is None:
                break
            self.members.append(member)
            if self.anchor is None and not self._anchored(*member):
                k = len(self.members)  # it trains alone: the round ends with it
        self.admitted = sum(1 for member in self.members
                            if _joins(self.objective, member, self.anchor))

    def _anchored(self, trial: optuna.Trial, params: dict[str, Any]) -> bool:
        """Make ``trial`` the anchor if it can lead a group; False: the round stops growing
        (a user model torch.func cannot run, or a model too large to gain)."""
        from tunecli.trainer.fusion import (
            round_fixes,
            why_not_functional,
            why_not_fused,
            work_per_example,
        )

        spec, data_root = self.objective.spec, self.objective.data_root
        if not _fresh(self.objective, trial) or why_not_fused(spec.trainer, params) is not None:
            return True  # not an anchor; the next asked trial may be
        problem = why_not_functional(spec.trainer, params, spec.base_dir, data_root)
        if problem is not None:
            self.unfusable(problem)
            return False
        self.anchor = params
        self.fixed = {name: params[name] for name in params
                      if round_fixes(spec.trainer.model, name)}
        self.refilling = self.plan.k > 1
        if self.plan.max_work is None:
            return True
        work = work_per_example(spec.trainer, params, spec.base_dir, data_root) \
            * _batch_size(spec, params)
        if work <= self.plan.max_work:
            return True
        self.refilling = False  # too much work to gain: this round trains it alone
        self.too_large(f"trial {trial.number} trains alone: its model does {_millions(work)} "
                       f"multiply-adds a step (weights x batch size), past the "
                       f"{_millions(self.plan.max_work)} up to which fused groups train faster "
                       f"on {'the CPU' if self.plan.device == 'cpu' else self.plan.device.upper()}"
                       " (--fuse K fuses such trials anyway)")
        return False

    def _train(self, group: list[Member]) -> None:
        anchored = self.refilling and any(params is self.anchor for _, params in group)
        if len(group) > 1 or anchored:
            self.objective.train_group(group, self.finish, self.refill if anchored else None,
                                       slots=self.plan.k)
        else:
            _train_alone(self.objective, *group[0], self.finish)


def _joins(objective: Objective, member: Member, anchor: dict[str, Any] | None) -> bool:
    """Whether a trial asked for a refill can join the anchor's group."""
    from tunecli.trainer.fusion import group_key

    key = _group_of(objective, *member)
    return anchor is not None and key is not None \
        and key == group_key(objective.spec.trainer, anchor)


def _group_of(objective: Objective, trial: optuna.Trial, params: dict[str, Any]) -> Any:
    """The group ``trial`` can train in (``group_key``), or None: it trains alone (a retry
    that continues its checkpoint, or a configuration that is not fused)."""
    from tunecli.trainer.fusion import group_key, why_not_functional, why_not_fused

    trainer = objective.spec.trainer
    if not _fresh(objective, trial) or why_not_fused(trainer, params) \
            or why_not_functional(trainer, params, objective.spec.base_dir, objective.data_root):
        return None
    return group_key(trainer, params)


def _millions(count: int) -> str:
    return f"{count / 1e6:.0f}M" if count >= 10_000_000 else f"{count / 1e6:.1f}M"


def _batch_size(spec: StudySpec, params: dict[str, Any]) -> int:
    from tunecli.trainer.models import full_config

    return max(1, int(full_config(spec.trainer.model, params)["batch_size"]))


def _slots_left(trials: list[FrozenTrial], spec: StudySpec) -> float:
    """Trials the budget still allows to start: by count, and by epochs (``compute``)."""
    budget = spec.budget
    left = math.inf
    if budget.n_trials is not None:
        counts = count_trials(trials)
        left = budget.n_trials - counts["finished"] - counts["running"]
    if budget.epochs is not None:
        left = min(left, budget.epochs - compute.epochs_in_use(trials, spec.trainer.epochs))
    return left


def _fresh(objective: Objective, trial: optuna.Trial) -> bool:
    """Not a retry that continues a checkpoint (those train alone, from where they were)."""
    path = objective.checkpoint_for(trial)
    return path is None or not path.exists()


def _groups(objective: Objective, members: list[Member]) -> list[list[Member]]:
    """Members of one structure together; retries and unfusable ones alone."""
    groups: dict[Any, list[Member]] = {}
    alone = []
    for trial, params in members:
        key = _group_of(objective, trial, params)
        if key is None:
            alone.append([(trial, params)])
        else:
            groups.setdefault(key, []).append((trial, params))
    return [*groups.values(), *alone]


def _train_alone(objective: Objective, trial: optuna.Trial, params: dict[str, Any],
                 finish: Finish) -> None:
    """As ``study.optimize`` runs one trial: pruned, failed, or its value."""
    try:
        value = objective.train(trial, params)
    except optuna.TrialPruned:
        finish(trial, TrialState.PRUNED, None)
    except (TrialFailed, TrialCut, Surplus):
        finish(trial, TrialState.FAIL, None)
    else:
        finish(trial, TrialState.COMPLETE, value)
