"""Rounds of fused trials: ask K trials, train those of one structure together, tell each.

How K is chosen (``trainer.fuse``): 1 turns fusion off; a number is taken as given; ``auto``
fuses the built-in MLP where the widest model the space allows is small enough to gain
(measured in ``benchmarks/fused_trials.py``), with K from the device.

Grouping: the round's first fresh trial is sampled freely; the later ones are asked with its
shared settings (depth, batch size, optimizer, activation, batch norm, Nesterov: what one
stacked model must share) fixed through Optuna's ``enqueue_trial``, and the sampler chooses
everything else (learning rate, width, dropout, decay, ...) as usual. Trials that still differ
(a retry that continues its checkpoint, a trial another worker queued, an optimizer that is not
fused) train alone. Every member is a whole Optuna trial: it counts against the budget,
reports each epoch, may be pruned, and is stored as soon as it leaves its group.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tunecli.engine import compute, optuna_internals
from tunecli.engine.objective import Objective, Surplus
from tunecli.engine.recovery import count_trials
from tunecli.engine.signals import StopSignals
from tunecli.errors import TrialFailed

if TYPE_CHECKING:
    from tunecli.spec.models import StudySpec

__all__ = ["FusePlan", "fuse_plan", "run_round"]

# auto, per device kind: K, and the most work per step (weights x batch size, about one
# step's multiply-adds per member) worth fusing. Above it one trial's matrix products already
# keep the device busy, and a fused group is little or no faster than its members one after
# another, while it fixes their structure (benchmarks/README.md, 2 CPU cores: every measured
# configuration up to 3.3M gained 1.9-4.6x, every one from 8.6M on 0.8-1.3x, e.g. a 2 x 128
# Fashion-MNIST MLP at batch 128, 15M: 1.3x). CUDA's limit is a first guess, not yet measured.
_AUTO = {"cpu": (8, 4_000_000), "cuda": (16, 2_500_000_000)}


@dataclass(frozen=True)
class FusePlan:
    """How this run groups trials: up to ``k`` per group; under ``auto`` a round whose first
    configuration does more than ``max_work`` per step (weights x batch size) trains alone."""

    k: int
    max_work: int | None = None
    why_alone: str = ""        # why trials train one at a time, when they all do


def fuse_plan(spec: StudySpec, device_type: str) -> FusePlan:
    fuse = spec.trainer.fuse
    if fuse == 1:
        return FusePlan(1)
    from tunecli.trainer.fused import why_not_fused

    why = why_not_fused(spec.trainer, {})
    if spec.multi_objective or spec.constraints:  # measured and checked per trial, alone
        why = "studies with several objectives or constraints are trained one at a time"
    if spec.sampler.type == "grid":  # Optuna's grid sampler stops the study from inside tell
        why = "the grid sampler is run one trial at a time"
    if why:
        return FusePlan(1, why_alone=why)
    if fuse != "auto":
        return FusePlan(int(fuse))
    k, max_work = _AUTO.get(device_type, _AUTO["cpu"])
    return FusePlan(k, max_work)


Finish = Callable[[optuna.Trial, TrialState, "float | list[float] | None"], None]


def run_round(study: optuna.Study, objective: Objective, plan: FusePlan,
              log: Callable[[optuna.Study, FrozenTrial], None], signals: StopSignals) -> None:
    """Ask up to ``plan.k`` trials (never past the budget), train them, tell each one."""
    from tunecli.trainer.fused import SHARED, group_key, weights, why_not_fused
    from tunecli.trainer.models import is_layer_width

    spec = objective.spec
    open_trials: dict[int, optuna.Trial] = {}

    def finish(trial: optuna.Trial, state: TrialState, value: float | list[float] | None
               ) -> None:
        with signals.held():  # a signal must not cut a storage write in half
            frozen = study.tell(trial, value if state == TrialState.COMPLETE else None,
                                state=None if state == TrialState.COMPLETE else state)
        open_trials.pop(trial.number, None)
        log(study, frozen)

    members: list[tuple[optuna.Trial, dict[str, Any]]] = []
    anchor: dict[str, Any] | None = None

    try:
        k = plan.k
        while len(members) < k:
            trials = study.get_trials(deepcopy=False) if members else []
            if members and _slots_left(trials, spec) <= 0:
                break
            if anchor is not None and not any(t.state == TrialState.WAITING for t in trials):
                fixed = {name: anchor[name] for name in anchor
                         if name in SHARED or name == "width" or is_layer_width(name)}
                study.enqueue_trial(fixed, skip_if_exists=False)
            trial = optuna_internals.ask(study)
            open_trials[trial.number] = trial
            try:
                params = objective.start(trial)
            except Surplus:
                finish(trial, TrialState.FAIL, None)
                break
            members.append((trial, params))
            if anchor is None and _fresh(objective, trial) \
                    and why_not_fused(spec.trainer, params) is None:
                anchor = params
                if plan.max_work is not None and weights(
                        spec.trainer, params, spec.base_dir, objective.data_root) \
                        * _batch_size(spec, params) > plan.max_work:
                    k = len(members)  # too much work to gain: this round trains it alone
        with optuna_internals.heartbeats(study, lambda: list(open_trials.copy().values())):
            for group in _groups(objective, members, group_key, why_not_fused):
                if len(group) > 1:
                    objective.train_group(group, finish)
                else:
                    _train_alone(objective, *group[0], finish)
    except BaseException as exc:
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else \
            f"{type(exc).__name__}: {exc}"
        for trial in list(open_trials.values()):
            trial.set_user_attr("fail_reason", reason)
            finish(trial, TrialState.FAIL, None)
        raise


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


def _groups(objective: Objective, members: list[tuple[optuna.Trial, dict[str, Any]]],
            group_key: Any, why_not_fused: Any) -> list[list[tuple[optuna.Trial,
                                                                  dict[str, Any]]]]:
    """Members of one structure together; retries and unfusable ones alone."""
    groups: dict[Any, list[tuple[optuna.Trial, dict[str, Any]]]] = {}
    alone = []
    for trial, params in members:
        if not _fresh(objective, trial) or why_not_fused(objective.spec.trainer, params):
            alone.append([(trial, params)])
        else:
            groups.setdefault(group_key(objective.spec.trainer, params), []).append(
                (trial, params))
    return [*groups.values(), *alone]


def _train_alone(objective: Objective, trial: optuna.Trial, params: dict[str, Any],
                 finish: Finish) -> None:
    """As ``study.optimize`` runs one trial: pruned, failed, or its value."""
    try:
        value = objective.train(trial, params)
    except optuna.TrialPruned:
        finish(trial, TrialState.PRUNED, None)
    except (TrialFailed, Surplus):
        finish(trial, TrialState.FAIL, None)
    else:
        finish(trial, TrialState.COMPLETE, value)
