"""Name -> sampler and name -> pruner: the one place a new strategy is added.

Each factory takes the whole ``StudySpec`` (a sampler may need the space, a pruner the number
of epochs). Docs, validation and the parametrised tests all read these two tables.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable

import optuna
from optuna.pruners import BasePruner
from optuna.samplers import BaseSampler

from tunecli.spec import StudySpec

__all__ = ["SAMPLERS", "PRUNERS", "make_sampler", "make_pruner", "check_sampler_fits"]

_MAX_GRID_POINTS = 100_000
# QMC, PatientPruner and friends are "experimental" in Optuna; users chose them knowingly.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _tpe(spec: StudySpec) -> BaseSampler:
    s = spec.sampler
    return optuna.samplers.TPESampler(seed=s.seed, n_startup_trials=_startup(s, 10), **s.options)


def _gp(spec: StudySpec) -> BaseSampler:
    s = spec.sampler
    return optuna.samplers.GPSampler(seed=s.seed, n_startup_trials=_startup(s, 10), **s.options)


def _hyperopt_tpe(spec: StudySpec) -> BaseSampler:
    from tunecli.hyperopt_sampler import HyperoptTPESampler

    s = spec.sampler
    return HyperoptTPESampler(spec.space, seed=s.seed, n_startup_trials=_startup(s, 10),
                              **s.options)


def _random(spec: StudySpec) -> BaseSampler:
    return optuna.samplers.RandomSampler(seed=spec.sampler.seed, **spec.sampler.options)


def _grid(spec: StudySpec) -> BaseSampler:
    return optuna.samplers.GridSampler(grid_search_space(spec), seed=spec.sampler.seed,
                                       **spec.sampler.options)


def _cmaes(spec: StudySpec) -> BaseSampler:
    s = spec.sampler
    return optuna.samplers.CmaEsSampler(seed=s.seed, n_startup_trials=_startup(s, 1),
                                        warn_independent_sampling=False, **s.options)


def _qmc(spec: StudySpec) -> BaseSampler:
    return optuna.samplers.QMCSampler(seed=spec.sampler.seed, warn_independent_sampling=False,
                                      **spec.sampler.options)


def _startup(s: Any, default: int) -> int:
    return default if s.n_startup_trials is None else s.n_startup_trials


SAMPLERS: dict[str, Callable[[StudySpec], BaseSampler]] = {
    "tpe": _tpe,
    "gp": _gp,
    "hyperopt-tpe": _hyperopt_tpe,
    "random": _random,
    "grid": _grid,
    "cmaes": _cmaes,
    "qmc": _qmc,
}


def _median(spec: StudySpec) -> BasePruner:
    p = spec.pruner
    return optuna.pruners.MedianPruner(n_startup_trials=p.n_startup_trials,
                                       n_warmup_steps=p.min_epochs, **p.options)


def _percentile(spec: StudySpec) -> BasePruner:
    p = spec.pruner
    return optuna.pruners.PercentilePruner(p.percentile, n_startup_trials=p.n_startup_trials,
                                           n_warmup_steps=p.min_epochs, **p.options)


def _asha(spec: StudySpec) -> BasePruner:
    p = spec.pruner
    return optuna.pruners.SuccessiveHalvingPruner(
        min_resource=max(1, p.min_epochs), reduction_factor=p.reduction_factor, **p.options)


def _hyperband(spec: StudySpec) -> BasePruner:
    p = spec.pruner
    return optuna.pruners.HyperbandPruner(
        min_resource=max(1, p.min_epochs), max_resource=p.max_epochs or spec.trainer.epochs,
        reduction_factor=p.reduction_factor, **p.options)


def _none(spec: StudySpec) -> BasePruner:
    return optuna.pruners.NopPruner()


PRUNERS: dict[str, Callable[[StudySpec], BasePruner]] = {
    "median": _median,
    "percentile": _percentile,
    "asha": _asha,
    "hyperband": _hyperband,
    "none": _none,
}


def make_sampler(spec: StudySpec) -> BaseSampler:
    return SAMPLERS[spec.sampler.type](spec)


def make_pruner(spec: StudySpec) -> BasePruner:
    pruner = PRUNERS[spec.pruner.type](spec)
    if spec.pruner.patience is not None and spec.pruner.type != "none":
        pruner = optuna.pruners.PatientPruner(pruner, patience=spec.pruner.patience)
    return pruner


def grid_search_space(spec: StudySpec) -> dict[str, list[Any]]:
    from tunecli.space import grid_values

    return {name: grid_values(p, spec.sampler.grid_points) for name, p in spec.searched().items()}


def grid_size(spec: StudySpec) -> int:
    return math.prod(len(v) for v in grid_search_space(spec).values())


def check_sampler_fits(spec: StudySpec, fail: Callable[..., Any]) -> None:
    """Problems only visible once the sampler meets the space, reported as spec errors."""
    if spec.sampler.type == "grid":
        size = grid_size(spec)
        if size > _MAX_GRID_POINTS:
            fail("sampler.type", f"the grid has {size} points, more than {_MAX_GRID_POINTS}",
                 "Lower sampler.grid_points, add steps, or use tpe.")
    for key in spec.sampler.options:
        if key in ("seed", "n_startup_trials", "search_space"):
            fail(f"sampler.options.{key}", f"'{key}' has its own key",
                 f"Write sampler.{key} instead.")
    for where, factory in (("sampler", make_sampler), ("pruner", make_pruner)):
        try:
            factory(spec)
        except (TypeError, ValueError) as exc:
            fail(f"{where}.options", f"rejected by Optuna ({exc})",
                 "Check the option names and values.")
