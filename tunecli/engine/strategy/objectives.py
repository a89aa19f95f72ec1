"""Several objectives and constraints: accuracy against size and speed.

A multi-objective study (``objectives:``) trains on its first objective, a per-epoch metric;
the others are measures of the model (``trainer/measures.py``), or, for your own training code,
metrics it reports. Constraints go to Optuna
through ``trial.set_constraint``, so its samplers (TPE, GP, NSGA-II) steer away from
infeasible regions and its Pareto front leaves such trials out.

- A constraint the architecture alone decides (params, FLOPs, latency, memory) is checked
  before the trial trains: a trial that breaks one is stored pruned, with its constraint
  values and the reason, and costs no epoch.
- Optuna cannot prune a multi-objective study (``Trial.report`` raises). tunecli prunes by
  dominance at the same epoch (``dominated_at``): a trial stops when enough finished trials
  were, after as many epochs, more accurate while no larger or slower on every other
  objective (a reported metric: its best so far at that epoch). A trial on the front at that
  epoch is never stopped, so pruning only removes trials that the front already beats.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tunecli import attrs
from tunecli.errors import SpecError

if TYPE_CHECKING:
    from tunecli.spec.models import StudySpec

__all__ = [
    "DOMINATORS",
    "EPOCHS_ATTR",
    "MEASURES_ATTR",
    "Infeasible",
    "before_training",
    "best_trial",
    "dominated_at",
    "needs_measures",
    "pareto_front",
    "primary",
    "values_after_training",
]

MEASURES_ATTR = attrs.MEASURES
EPOCHS_ATTR = attrs.EPOCHS_DONE
INFEASIBLE_ATTR = attrs.INFEASIBLE
# Finished trials that must dominate a trial at an epoch before it is stopped.
DOMINATORS = 2


class Infeasible(optuna.TrialPruned):
    """The architecture breaks a constraint: the trial ends pruned before its first epoch."""


def primary(trial: FrozenTrial) -> float | None:
    """The first objective's value (the only one of a single-objective study)."""
    return trial.values[0] if trial.values else None


def needs_measures(spec: StudySpec) -> set[str]:
    """The measures this study's objectives and constraints name that are known before
    training."""
    from tunecli.trainer.measures import BEFORE_TRAINING

    names = set(spec.objective_names[1:]) | {c.name for c in spec.parsed_constraints()}
    return names & set(BEFORE_TRAINING)


def before_training(trial: optuna.Trial, spec: StudySpec, params: dict[str, Any],
                    data_root: str | None) -> dict[str, float]:
    """Measure the configuration's model and check its architecture constraints; raises
    ``Infeasible`` when it breaks one (the trial then costs no epoch)."""
    names = needs_measures(spec)
    if not names:
        return {}
    from tunecli.trainer.measures import measure_config

    values = measure_config(spec.trainer, params, names, base_dir=spec.base_dir,
                            data_root=data_root)
    trial.set_user_attr(MEASURES_ATTR, values)
    broken = []
    for constraint in spec.parsed_constraints():
        if constraint.name in values:
            violation = constraint.violation(values[constraint.name])
            trial.set_constraint(str(constraint), violation)
            if violation > 0:
                broken.append(f"{constraint.name} {values[constraint.name]:g} breaks "
                              f"{constraint}")
    if broken:
        trial.set_user_attr(INFEASIBLE_ATTR, "; ".join(broken))
        raise Infeasible("; ".join(broken))
    return values


def values_after_training(trial: optuna.Trial, spec: StudySpec, value: float,
                          measures: dict[str, float], train_seconds: float,
                          reported: dict[str, float] | None = None) -> float | list[float]:
    """The trial's objective values; the constraints known only now are set. ``measures``
    were taken before training (their constraints are set); ``reported`` are the metrics your
    own code gave."""
    known = {**(reported or {}), **measures, "train_seconds": train_seconds, spec.metric: value}
    for constraint in spec.parsed_constraints():
        if constraint.name not in measures:  # checked before training otherwise
            trial.set_constraint(str(constraint), constraint.violation(known[constraint.name]))
    if not spec.multi_objective:
        return value
    missing = [n for n in spec.objective_names if n not in known]
    if missing:  # a measure only a newer tunecli knows: a spec error, not this trial's fault
        raise SpecError(f"objective '{missing[0]}' is not measured", path="objectives")
    return [known[name] for name in spec.objective_names]


def _best_until(history: list[dict[str, float]], metric: str, epoch: int,
                minimize: bool) -> float | None:
    seen = [row[metric] for row in history
            if row.get("epoch", 0) <= epoch and isinstance(row.get(metric), (int, float))
            and not math.isnan(row[metric])]
    if not seen:
        return None
    return min(seen) if minimize else max(seen)


def dominated_at(spec: StudySpec, trials: list[FrozenTrial], number: int, epoch: int,
                 history: list[dict[str, float]], measures: dict[str, float]) -> list[int]:
    """The finished trials that, after ``epoch`` epochs, were better on the first objective
    than this trial's best so far and no worse on every other objective (empty: keep on)."""
    minimize = spec.direction == "minimize"
    mine = _best_until(history, spec.metric, epoch, minimize)
    if mine is None:
        return []
    others = [(name, direction) for name, direction in
              zip(spec.objective_names[1:], spec.directions[1:], strict=True)]
    found = []
    for t in trials:
        if t.number == number or t.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            continue
        their_history = t.user_attrs.get(attrs.HISTORY) or []
        theirs = _best_until(their_history, spec.metric, epoch, minimize)
        if theirs is None or len(their_history) < epoch:
            continue
        if not (theirs < mine if minimize else theirs > mine):
            continue
        their_measures = t.user_attrs.get(MEASURES_ATTR) or {}
        if all(_no_worse(_value_at(name, direction, their_history, their_measures, epoch),
                         _value_at(name, direction, history, measures, epoch), direction)
               for name, direction in others):
            found.append(t.number)
    return found


def _value_at(name: str, direction: str, history: list[dict[str, float]],
              measures: dict[str, float], epoch: int) -> float | None:
    """An objective after the first at ``epoch``: a measure of the model, or a metric your own
    code reports (its best so far)."""
    if name in measures:
        return measures[name]
    return _best_until(history, name, epoch, direction == "minimize")


def _no_worse(theirs: float | None, mine: float | None, direction: str) -> bool:
    if theirs is None or mine is None:
        return False
    return theirs <= mine if direction == "minimize" else theirs >= mine


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best feasible trial; in a multi-objective study, the front's best on the first
    objective (what progress lines, checkpoints and ``train NAME`` need one trial for)."""
    front = pareto_front(study)
    return front[0] if front else None


def pareto_front(study: optuna.Study) -> list[FrozenTrial]:
    """The feasible non-dominated completed trials (Optuna's), ordered by the first
    objective, best first; for one objective, the best trial."""
    if len(study.directions) == 1:
        try:
            return [study.best_trial]
        except ValueError:  # no feasible completed trial yet
            return []
    front = study.best_trials
    reverse = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    return sorted(front, key=lambda t: t.values[0], reverse=reverse)


def first_objective(study: optuna.Study) -> Any:
    """``target=`` for Optuna's importance and plot functions: None for one objective (their
    default); the first objective's value for several (they refuse a study without one)."""
    if len(study.directions) == 1:
        return None
    return lambda t: t.values[0]


def epoch_curve(trial: FrozenTrial, metric: str) -> tuple[list[int], list[float]]:
    """The trial's first objective by epoch: Optuna's intermediate values, or (in a
    multi-objective study, where Optuna takes none) its stored history."""
    if trial.intermediate_values:
        steps = sorted(trial.intermediate_values)
        return steps, [trial.intermediate_values[s] for s in steps]
    rows = [r for r in trial.user_attrs.get(attrs.HISTORY) or []
            if isinstance(r.get(metric), (int, float))]
    return [int(r["epoch"]) for r in rows], [float(r[metric]) for r in rows]


_PICKS = {"smallest-within": ("params", "flops", "peak_memory_mb"),
          "fastest-within": ("latency_ms", "latency_batch_ms", "train_seconds")}


def pick(study: optuna.Study, spec: StudySpec, choice: str) -> tuple[FrozenTrial, str]:
    """A trial of the front, as ``train --pick`` names it, and why that one:

    - ``best``: the best on the first objective;
    - ``smallest-within D``: of the front's trials within D of that best (0.005: half a point
      of accuracy), the smallest (the first of params, flops, peak_memory_mb among the
      objectives); ``fastest-within D`` likewise by latency_ms, latency_batch_ms or
      train_seconds.
    """
    words = choice.split()
    front = pareto_front(study)
    if not front:
        raise SpecError(f"study '{study.study_name}' has no feasible completed trial",
                        source="--pick", fix="Run or resume the study first.")
    if words == ["best"]:
        return front[0], f"the best {spec.objective_names[0]} of the front"
    usage = "Write --pick best, --pick 'smallest-within 0.005' or --pick 'fastest-within 0.01'."
    if len(words) != 2 or words[0] not in _PICKS:
        raise SpecError(f"cannot read --pick {choice!r}", source="--pick", fix=usage)
    try:
        within = float(words[1])
    except ValueError:
        raise SpecError(f"--pick {choice!r}: {words[1]!r} is not a number", source="--pick",
                        fix=usage) from None
    names = spec.objective_names
    by = next((n for n in _PICKS[words[0]] if n in names[1:]), None)
    if by is None:
        raise SpecError(f"--pick {words[0]} needs one of {', '.join(_PICKS[words[0]])} among "
                        f"the objectives; this study has {', '.join(names)}", source="--pick",
                        fix="Use --pick best or --trial N.")
    best = front[0].values[0]
    minimize = spec.direction == "minimize"
    close = [t for t in front if (t.values[0] - best if minimize else best - t.values[0])
             <= within + 1e-12]
    index = names.index(by)
    chosen = min(close, key=lambda t: (t.values[index], t.number))
    listed = ", ".join(f"#{t.number} ({names[0]}={t.values[0]:.4g}, {by}={t.values[index]:.4g})"
                       for t in close)
    return chosen, (f"{len(close)} trial{'s' if len(close) > 1 else ''} of the front within "
                    f"{within:g} of the best {names[0]} {best:.4g}: {listed}; #{chosen.number} "
                    f"has the lowest {by}")
