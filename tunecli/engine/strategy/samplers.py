"""Name -> sampler: the one place a new sampler is added (pruners: ``pruners``; the grid's
queue: ``grid_queue``).

Each factory takes the whole ``StudySpec`` (a sampler may need the space). Docs, validation
and the parametrised tests read this table.

A sampler factory also takes the seed of *this process* (see ``run_seed``): the study's seed on
the run that creates the study, so that run is reproducible, and a seed of its own in every later
run, worker or machine, so that none of them replays the random draws of another.
"""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.samplers import BaseSampler

from tunecli.engine.strategy import grid_queue, pruners
from tunecli.spec.checks import OWN_KEYS

if TYPE_CHECKING:
    from tunecli.spec.models import StudySpec  # types only: the spec imports the registries


__all__ = ["SAMPLER_FACTORIES", "check_options", "make_sampler", "run_seed"]

# QMC, PatientPruner and friends are "experimental" in Optuna; users chose them knowingly.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _tpe(spec: StudySpec, seed: int | None) -> BaseSampler:
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials(spec),
                                      **spec.sampler.options)


def _gp(spec: StudySpec, seed: int | None) -> BaseSampler:
    s = spec.sampler
    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup_trials(spec),
                                    **s.options)


def _hyperopt_tpe(spec: StudySpec, seed: int | None) -> BaseSampler:
    from tunecli.engine.strategy.hyperopt_sampler import HyperoptTPESampler

    s = spec.sampler
    return HyperoptTPESampler(spec.space, seed=seed, n_startup_trials=startup_trials(spec),
                              **s.options)


def _nsga2(spec: StudySpec, seed: int | None) -> BaseSampler:
    """NSGA-II, the evolutionary multi-objective sampler; it reads trials' constraints."""
    return optuna.samplers.NSGAIISampler(seed=seed, **spec.sampler.options)


def _random(spec: StudySpec, seed: int | None) -> BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed, **spec.sampler.options)


def _grid(spec: StudySpec, seed: int | None) -> BaseSampler:
    return grid_queue.QueuedGrid(seed=seed)


def _cmaes(spec: StudySpec, seed: int | None) -> BaseSampler:
    s = spec.sampler
    return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=startup_trials(spec),
                                        warn_independent_sampling=False, **s.options)


class _StaticSpaceQMC(optuna.samplers.QMCSampler):
    """Optuna's QMC over the study's unconditional parameters, from the first trial on.

    Optuna's QMC infers its space from the trials so far, and numbers its points per space: a
    conditional parameter (or the first trial finishing) changes the inferred space, and the
    new space starts again at the sequence's first point, drawing a configuration already
    tried. A space fixed by the spec keeps one sequence; conditional parameters are drawn by
    the independent (random) sampler.
    """

    def __init__(self, search_space: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._static_space = search_space

    def infer_relative_search_space(self, study: optuna.Study,
                                    trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
        return dict(self._static_space)


def _qmc(spec: StudySpec, seed: int | None) -> BaseSampler:
    # Scrambled, and each process scrambles its own sequence. Optuna's default unscrambled
    # sequence is the same in every process, and the index of the next point, stored with the
    # study, is read and then written in two steps: workers starting together drew the same
    # point. ``options: {scramble: false}`` restores Optuna's default for a single process.
    from tunecli.engine.strategy.space import distribution

    static = {name: distribution(p) for name, p in spec.searched().items() if not p.when}
    options = {"scramble": True, **spec.sampler.options}
    return _StaticSpaceQMC(static, seed=seed, warn_independent_sampling=False,
                           warn_asynchronous_seeding=False, **options)


START_POINTS_BY_DEFAULT = ("tpe", "gp", "hyperopt-tpe")


def center_first(spec: StudySpec) -> bool:
    """Whether a new study tries the space's centre early (``space.center_config``):
    model-based samplers start from it; random, QMC and grid keep their own designs."""
    return _chosen_or_default(spec, spec.sampler.center_first)


def defaults_first(spec: StudySpec) -> bool:
    """Whether a new study's first trial is the trainer's defaults moved into the space
    (``space.default_config``), under the same rule as the centre; never for your own code,
    whose defaults tunecli cannot know."""
    return spec.trainer.kind == "builtin" and _chosen_or_default(spec,
                                                                 spec.sampler.defaults_first)


def _chosen_or_default(spec: StudySpec, chosen: bool | None) -> bool:
    return spec.sampler.type in START_POINTS_BY_DEFAULT if chosen is None else chosen


def starting_points(spec: StudySpec) -> list[tuple[str, dict[str, Any]]]:
    """A new study's first trials, each with the user attribute that marks it: the trainer's
    defaults (what training without a search would use; SMAC starts there too), then the
    centre (Google Vizier's start), once if the two are the same configuration.

    Measured on the "Time to a good model" Fashion-MNIST set-up (benchmarks/README.md): the
    defaults alone met random search's median final best in 6 of 10 seeds, the centre in 2 of
    5; on digits the centre met it in 3 of 5, the defaults in none."""
    from tunecli.catalogue import LOOP_DEFAULTS
    from tunecli.engine.strategy import space
    from tunecli.trainer.models import defaults_for

    points: list[tuple[str, dict[str, Any]]] = []
    if defaults_first(spec):
        known = {**LOOP_DEFAULTS, **defaults_for(spec.trainer.model)}
        points.append(("defaults", space.default_config(spec.space, known)))
    if center_first(spec):
        centre = space.center_config(spec.space)
        if not any(config == centre for _, config in points):
            points.append(("center", centre))
    return points


# Random trials before each model guides the search, the two starting points (``starting_points``)
# included. TPE's is 5, not Optuna's 10: after the trainer's defaults and the centre, 3 random
# trials, with the median pruner's 3 unpruned trials, reached the "Time to a good model" target
# in a median 88 epochs of 480 on seeds 5-9, against 116 with 10 and 5 (benchmarks/README).
_MODEL_STARTUP = {"tpe": 5, "gp": 10, "hyperopt-tpe": 10, "cmaes": 1}


def startup_trials(spec: StudySpec) -> int:
    """Trials the sampler draws before its model guides it (0: it has no model)."""
    default = _MODEL_STARTUP.get(spec.sampler.type)
    if default is None:
        return 0
    chosen = spec.sampler.n_startup_trials
    return default if chosen is None else chosen


SAMPLER_FACTORIES: dict[str, Callable[[StudySpec, int | None], BaseSampler]] = {
    "tpe": _tpe,
    "gp": _gp,
    "hyperopt-tpe": _hyperopt_tpe,
    "nsga2": _nsga2,
    "random": _random,
    "grid": _grid,
    "cmaes": _cmaes,
    "qmc": _qmc,
}


def make_sampler(spec: StudySpec, *, first_run: bool = True) -> BaseSampler:
    """The study's sampler for this process (``first_run``: this process creates the study)."""
    return SAMPLER_FACTORIES[spec.sampler.type](spec, run_seed(spec, first_run=first_run))


def run_seed(spec: StudySpec, *, first_run: bool) -> int | None:
    """The sampler seed of this process.

    The run that creates a study uses ``sampler.seed`` as it is, so one uninterrupted run from
    scratch is reproducible. Every other process (a resume, a worker, a second machine, a run with
    another sampler) mixes in fresh entropy: built from the same seed, its sampler would replay
    the first run's random draws and repeat its configurations.
    """
    study_seed = spec.sampler.seed
    if study_seed is None or first_run:
        return study_seed
    mixed = np.random.SeedSequence([study_seed & 0xFFFFFFFF, secrets.randbits(64)])
    return int(mixed.generate_state(1)[0] & 0x7FFFFFFF)


def check_options(spec: StudySpec, fail: Callable[..., Any]) -> None:
    """Whether Optuna takes ``sampler.options`` and ``pruner.options``: it is asked by building
    both (the spec's own checks, without Optuna, have already run)."""
    if spec.sampler.type == "grid" or any(key in spec.sampler.options for key in OWN_KEYS):
        return  # a grid takes none; own keys were named by the spec's checks
    for where, factory in (("sampler", make_sampler), ("pruner", pruners.make_pruner)):
        try:
            factory(spec)
        except (TypeError, ValueError) as exc:
            fail(f"{where}.options", f"rejected by Optuna ({exc})",
                 "Check the option names and values.")
