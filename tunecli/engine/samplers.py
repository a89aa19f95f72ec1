"""Name -> sampler and name -> pruner: the one place a new strategy is added.

Each factory takes the whole ``StudySpec`` (a sampler may need the space, a pruner the number
of epochs). Docs, validation and the parametrised tests all read these two tables.

A sampler factory also takes the seed of *this process* (see ``run_seed``): the study's seed on
the run that creates the study, so that run is reproducible, and a seed of its own in every later
run, worker or machine, so that none of them replays the random draws of another.
"""

from __future__ import annotations

import itertools
import random
import secrets
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.pruners import BasePruner
from optuna.samplers import BaseSampler

from tunecli import attrs
from tunecli.spec import grid
from tunecli.spec.checks import OWN_KEYS

if TYPE_CHECKING:
    from tunecli.spec.models import StudySpec  # types only: the spec imports the registries


__all__ = [
    "PRUNERS",
    "SAMPLERS",
    "QueuedGrid",
    "check_options",
    "grid_claim_lost",
    "grid_exhausted",
    "make_pruner",
    "make_sampler",
    "queue_grid",
    "run_seed",
]

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
    from tunecli.engine.hyperopt_sampler import HyperoptTPESampler

    s = spec.sampler
    return HyperoptTPESampler(spec.space, seed=seed, n_startup_trials=startup_trials(spec),
                              **s.options)


def _nsga2(spec: StudySpec, seed: int | None) -> BaseSampler:
    """NSGA-II, the evolutionary multi-objective sampler; it reads trials' constraints."""
    return optuna.samplers.NSGAIISampler(seed=seed, **spec.sampler.options)


def _random(spec: StudySpec, seed: int | None) -> BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed, **spec.sampler.options)


class QueuedGrid(optuna.samplers.RandomSampler):
    """Grid search whose points wait in the study's queue, put there once when the study is
    created (``queue_grid``). Optuna's storages hand each waiting trial to exactly one worker,
    so no point runs twice under any concurrency; Optuna's own ``GridSampler`` picks its next
    point from the trials it last read, and racing workers could pick the same one. A trial
    that did not come from the queue means the grid was used up: it becomes surplus
    (``grid_claim_lost``); this sampler is never asked for a parameter of a grid point."""


def _grid(spec: StudySpec, seed: int | None) -> BaseSampler:
    return QueuedGrid(seed=seed)


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
    from tunecli.engine.space import distribution

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
    (``space.default_config``), under the same rule as the centre."""
    return _chosen_or_default(spec, spec.sampler.defaults_first)


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
    from tunecli.engine import space
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


SAMPLERS: dict[str, Callable[[StudySpec, int | None], BaseSampler]] = {
    "tpe": _tpe,
    "gp": _gp,
    "hyperopt-tpe": _hyperopt_tpe,
    "nsga2": _nsga2,
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


def make_sampler(spec: StudySpec, *, first_run: bool = True) -> BaseSampler:
    """The study's sampler for this process (``first_run``: this process creates the study)."""
    return SAMPLERS[spec.sampler.type](spec, run_seed(spec, first_run=first_run))


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


def make_pruner(spec: StudySpec) -> BasePruner:
    pruner = PRUNERS[spec.pruner.type](spec)
    if spec.pruner.patience is not None and spec.pruner.type != "none":
        pruner = optuna.pruners.PatientPruner(pruner, patience=spec.pruner.patience)
    return pruner


def may_prune_at(spec: StudySpec) -> Callable[[int], bool]:
    """Epoch -> whether the pruner can act after it. Asking Optuna costs a storage read per
    trial and epoch; ASHA decides only at its rungs (min_epochs * reduction_factor ** k), the
    none pruner never. Every other pruner is asked every epoch but the last: a trial that has
    trained every epoch completes, as pruning it then would save nothing and would hide a real
    result from the sampler."""
    p = spec.pruner
    last = spec.trainer.epochs
    if p.type == "none":
        return lambda epoch: False
    if p.type != "asha" or p.patience is not None or set(p.options) - {"reduction_factor"}:
        return lambda epoch: epoch < last
    first = max(1, p.min_epochs)

    def at_rung(epoch: int) -> bool:
        rung = first
        while rung < epoch:
            rung *= p.reduction_factor
        return rung == epoch < last
    return at_rung


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
    from tunecli.engine.space import is_active

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


def check_options(spec: StudySpec, fail: Callable[..., Any]) -> None:
    """Whether Optuna takes ``sampler.options`` and ``pruner.options``: it is asked by building
    both (the spec's own checks, without Optuna, have already run)."""
    if spec.sampler.type == "grid" or any(key in spec.sampler.options for key in OWN_KEYS):
        return  # a grid takes none; own keys were named by the spec's checks
    for where, factory in (("sampler", make_sampler), ("pruner", make_pruner)):
        try:
            factory(spec)
        except (TypeError, ValueError) as exc:
            fail(f"{where}.options", f"rejected by Optuna ({exc})",
                 "Check the option names and values.")
