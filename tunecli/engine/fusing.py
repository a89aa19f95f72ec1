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

__all__ = ["FusePlan", "fuse_plan", "run_round"]

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
    return FusePlan(k, max_work, admit=k * REFILLS)


Finish = Callable[[optuna.Trial, TrialState, "float | list[float] | None"], None]
Member = tuple[optuna.Trial, dict[str, Any]]


def run_round(study: optuna.Study, objective: Objective, plan: FusePlan,
              log: Callable[[optuna.Study, FrozenTrial], None], signals: StopSignals,
              room: Callable[[int], float] = lambda in_flight: math.inf,
              unfusable: Callable[[str], None] = lambda why: None) -> None:
    """Ask up to ``plan.k`` trials (never past the budget), train them, tell each one; refill
    the group as members leave, up to ``plan.admit`` trials in all.

    ``room(in_flight)``: how many more trials may start while ``in_flight`` train (the run's
    timeout and failure limit; 0 stops the refills). ``unfusable(why)``: the user model
    cannot be fused through torch.func (this round's trial then trains alone)."""
    from tunecli.trainer.fusion import (
        round_fixes,
        why_not_functional,
        why_not_fused,
        work_per_example,
    )

    spec = objective.spec
    open_trials: dict[int, optuna.Trial] = {}

    def finish(trial: optuna.Trial, state: TrialState, value: float | list[float] | None
               ) -> None:
        with signals.held():  # a signal must not cut a storage write in half
            frozen = study.tell(trial, value if state == TrialState.COMPLETE else None,
                                state=None if state == TrialState.COMPLETE else state)
        open_trials.pop(trial.number, None)
        log(study, frozen)

    def ask(fixed: dict[str, Any] | None) -> Member | None:
        """A new trial, with ``fixed`` parameters unless another is waiting (None: the budget
        is spent, or another worker took the slot)."""
        trials = study.get_trials(deepcopy=False)
        if _slots_left(trials, spec) <= 0:
            return None
        if fixed is not None and not any(t.state == TrialState.WAITING for t in trials):
            study.enqueue_trial(fixed, skip_if_exists=False)
        trial = optuna_internals.ask(study)
        open_trials[trial.number] = trial
        try:
            return trial, objective.start(trial)
        except Surplus:
            finish(trial, TrialState.FAIL, None)
            return None

    members: list[Member] = []
    later: list[Member] = []   # asked to join the group but of another structure
    anchor: dict[str, Any] | None = None
    fixed: dict[str, Any] | None = None
    admitted = 0
    refilling = False  # the anchor's group takes new trials as members leave

    def refill(free: int) -> list[Member]:
        nonlocal admitted
        joining: list[Member] = []
        free = int(min(free, plan.admit - admitted, room(plan.k - free)))
        while len(joining) < free and not signals.requested and not later:
            member = ask(fixed)
            if member is None:
                break
            if _joins(objective, member, anchor):
                joining.append(member)
                admitted += 1
            else:
                later.append(member)
        return joining

    try:
        k = plan.k
        while len(members) < k:
            member = ask(fixed) if members else ask(None)
            if member is None:
                break
            members.append(member)
            trial, params = member
            if anchor is None and _fresh(objective, trial) \
                    and why_not_fused(spec.trainer, params) is None:
                problem = why_not_functional(spec.trainer, params, spec.base_dir,
                                             objective.data_root)
                if problem is not None:
                    unfusable(problem)
                    k = len(members)
                    continue
                anchor = params
                fixed = {name: anchor[name] for name in anchor
                         if round_fixes(spec.trainer.model, name)}
                refilling = plan.k > 1
                if plan.max_work is not None and work_per_example(
                        spec.trainer, params, spec.base_dir, objective.data_root) \
                        * _batch_size(spec, params) > plan.max_work:
                    k = len(members)  # too much work to gain: this round trains it alone
                    refilling = False
        admitted = sum(1 for member in members if _joins(objective, member, anchor))
        with optuna_internals.heartbeats(study, lambda: list(open_trials.copy().values())):
            # The round's own members, then those a refill asked that could not join.
            for asked in (members, later):
                for group in _groups(objective, asked):
                    anchored = refilling and any(params is anchor for _, params in group)
                    if len(group) > 1 or anchored:
                        objective.train_group(group, finish, refill if anchored else None,
                                              slots=plan.k)
                    else:
                        _train_alone(objective, *group[0], finish)
    except BaseException as exc:
        for trial in list(open_trials.values()):
            finish(trial, outcome.record_failure(trial, exc), None)
        raise


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
