"""Hypervolume: how much of the objective space a multi-objective study's front covers, one
number that grows as the front improves (what comparisons and the MO benchmark plot).

Every objective is turned into one to minimise; the reference point is the worst feasible
value of each objective over all the trials compared (so studies compared together share it),
and a front point on that reference adds nothing. Optuna's exact algorithm (WFG) computes it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from optuna.trial import FrozenTrial, TrialState

from tunecli import attrs
from tunecli.engine.search import budget

__all__ = ["hypervolume", "hypervolume_curve", "reference_point"]


def _feasible(t: FrozenTrial) -> bool:
    return (t.state == TrialState.COMPLETE and bool(t.values)
            and all(v <= 0 for v in t.constraints.values()))


def _losses(trials: Sequence[FrozenTrial], directions: Sequence[str]) -> np.ndarray:
    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    rows = [t.values for t in trials if _feasible(t)]
    losses: np.ndarray = np.array(rows, dtype=float).reshape(-1, len(directions)) * signs
    return losses


def reference_point(trial_lists: Sequence[Sequence[FrozenTrial]],
                    directions: Sequence[str]) -> np.ndarray | None:
    """The worst feasible value of each objective over every list (as losses); None when no
    trial is feasible."""
    losses = [_losses(trials, directions) for trials in trial_lists]
    stacked = np.concatenate([x for x in losses if len(x)]) if any(len(x) for x in losses) \
        else None
    return None if stacked is None else stacked.max(axis=0)


def hypervolume(trials: Sequence[FrozenTrial], directions: Sequence[str],
                reference: np.ndarray) -> float:
    from tunecli.engine.store.optuna_internals import compute_hypervolume

    losses = _losses(trials, directions)
    losses = losses[(losses <= reference).all(axis=1)] if len(losses) else losses
    if not len(losses):
        return 0.0
    return float(compute_hypervolume(losses, reference))


def hypervolume_curve(trials: Sequence[FrozenTrial], directions: Sequence[str],
                      reference: np.ndarray) -> dict[str, list[float]]:
    """Hypervolume after each finished trial, in the order they finished, against trials
    finished and epochs trained (pruned trials add their epochs, not a point)."""
    done = sorted((t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
                   and t.datetime_complete and not t.user_attrs.get(attrs.SURPLUS)),
                  key=lambda t: (t.datetime_complete, t.number))
    curve: dict[str, list[float]] = {"trials": [], "epochs": [], "hypervolume": []}
    epochs = 0
    seen: list[FrozenTrial] = []
    value = 0.0
    for k, t in enumerate(done, start=1):
        epochs += budget.epochs_of(t)
        if _feasible(t):
            seen.append(t)
            value = hypervolume(seen, directions, reference)
        curve["trials"].append(k)
        curve["epochs"].append(epochs)
        curve["hypervolume"].append(value)
    return curve
