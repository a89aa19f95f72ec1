"""The grid search's queue: every point enqueued once, so no point runs twice under any
concurrency, and the sign that the grid is used up."""

from __future__ import annotations

import itertools
import random
from typing import TYPE_CHECKING, Any

import optuna

from tunecli import attrs
from tunecli.spec import grid

if TYPE_CHECKING:
    from tunecli.spec.models import StudySpec

__all__ = ["QueuedGrid", "grid_claim_lost", "grid_exhausted", "grid_points", "queue_grid"]


class QueuedGrid(optuna.samplers.RandomSampler):
    """Grid search whose points wait in the study's queue, put there once when the study is
    created (``queue_grid``). Optuna's storages hand each waiting trial to exactly one worker,
    so no point runs twice under any concurrency; Optuna's own ``GridSampler`` picks its next
    point from the trials it last read, and racing workers could pick the same one. A trial
    that did not come from the queue means the grid was used up: it becomes surplus
    (``grid_claim_lost``); this sampler is never asked for a parameter of a grid point."""


def grid_exhausted(study: optuna.Study) -> bool:
    """A grid search whose queue is empty: every point is tried or being tried elsewhere."""
    return isinstance(study.sampler, QueuedGrid) and not study.get_trials(
        deepcopy=False, states=(optuna.trial.TrialState.WAITING,))


def grid_claim_lost(trial: optuna.Trial) -> bool:
    """In a grid search every trial comes from the queue (a grid point, a lost trial's retry,
    an ``--enqueue``'d configuration); a fresh one means another worker took the last point."""
    return isinstance(trial.study.sampler, QueuedGrid) and not any(
        key in trial.user_attrs for key in (attrs.GRID_POINT, attrs.RETRY_OF, attrs.ENQUEUED))


def grid_points(spec: StudySpec) -> list[dict[str, Any]]:
    """Every point of the grid, in an order shuffled by ``sampler.seed`` (a budget smaller
    than the grid then tries a spread sample of it, as Optuna's GridSampler did)."""
    from tunecli.engine.strategy.space import is_active

    space = grid.grid_search_space(spec)
    searched = spec.searched()
    fixed = {name: p.value for name, p in spec.space.items() if name not in searched}
    points: dict[tuple[Any, ...], dict[str, Any]] = {}
    for values in itertools.product(*space.values()):
        point: dict[str, Any] = {}
        for name, value in zip(space, values, strict=True):
            # a conditional parameter only where it applies, so no configuration repeats
            if is_active(searched[name], {**fixed, **point}):
                point[name] = value
        points.setdefault(tuple(point.items()), point)
    ordered = list(points.values())
    random.Random(spec.sampler.seed).shuffle(ordered)
    return ordered


def queue_grid(study: optuna.Study, spec: StudySpec, *, creating: bool) -> int:
    """Queue the grid's points (how many were queued). The process that creates the study
    does it before any trial runs. A study made by an older tunecli, which has finished trials
    but nothing queued, gets the points it has not tried yet when a run opens it."""
    if spec.sampler.type != "grid" or study.user_attrs.get(attrs.GRID_QUEUED):
        return 0
    trials = study.get_trials(deepcopy=False)
    done = {tuple(sorted(t.params.items())) for t in trials
            if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                           optuna.trial.TrialState.RUNNING)}
    if not creating and not done:
        return 0  # another process is creating it this moment, and queues the points
    study.set_user_attr(attrs.GRID_QUEUED, True)
    queued = 0
    for number, point in enumerate(grid_points(spec)):
        if tuple(sorted(point.items())) not in done:
            study.enqueue_trial(point, user_attrs={attrs.GRID_POINT: number},
                                skip_if_exists=False)
            queued += 1
    return queued
