"""From a stored study to what people read: tables, JSON, CSV and a best-config study file.

Everything here reads the storage alone; the spec travels with the study. ``summary`` gathers
the numbers once (counts, best trial, effort saved by pruning, parameter importances); the
terminal table, JSON, CSV and the HTML report (``html_report``) all read that one dict.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import warnings
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tunecli import attrs
from tunecli.engine.search import budget
from tunecli.engine.search.studies import best_trial
from tunecli.engine.store.recovery import count_trials, kind_of
from tunecli.engine.strategy import space
from tunecli.engine.strategy.objectives import first_objective
from tunecli.spec import StudySpec

__all__ = [
    "IMPORTANCE_METHODS",
    "effort",
    "effort_line",
    "format_value",
    "importance_evaluator",
    "importances",
    "ranked",
    "reported_trials",
    "summary",
    "to_csv",
    "to_json",
]


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _trial_row(t: FrozenTrial, spec: StudySpec) -> dict[str, Any]:
    return {
        "number": t.number,
        "state": t.state.name.lower(),
        "value": _clean(t.values[0]) if t.state == TrialState.COMPLETE and t.values else None,
        "last_value": _clean(t.intermediate_values[t.last_step]) if t.last_step else None,
        "epochs": t.user_attrs.get(attrs.EPOCHS_RUN, budget.epochs_reported(t)),
        "params": space.trial_config(spec.space, t.params),
        "duration_s": round(t.duration.total_seconds(), 3) if t.duration else None,
        attrs.PARAMS_COUNT: t.user_attrs.get(attrs.PARAMS_COUNT),
        attrs.FAIL_REASON: t.user_attrs.get(attrs.FAIL_REASON),
        attrs.RETRY_OF: t.user_attrs.get(attrs.RETRY_OF),
        # The trials it trained alongside in one fused model (empty: it trained alone), and
        # that group's first trial (a refilled group holds more trials than trained at once).
        attrs.FUSED_WITH: list(t.user_attrs.get(attrs.FUSED_WITH, [])),
        attrs.FUSED_GROUP: t.user_attrs.get(attrs.FUSED_GROUP) if t.user_attrs.get(attrs.FUSED_WITH)
        else None,
        # Several objectives: each by name; measures (params, latency_ms, ...) and constraints.
        "values": (dict(zip(spec.objective_names, map(_clean, t.values), strict=True))
                   if spec.multi_objective and t.values else None),
        attrs.MEASURES: t.user_attrs.get(attrs.MEASURES),
        "feasible": all(v <= 0 for v in t.constraints.values()) if t.constraints else None,
        attrs.INFEASIBLE: t.user_attrs.get(attrs.INFEASIBLE),
    }


def reported_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The study's trials without the surplus ones (a worker's lost race, never trained) and
    the waiting ones (queued: a grid's points past the budget, a retry not yet started)."""
    return [t for t in study.get_trials(deepcopy=False)
            if not t.user_attrs.get(attrs.SURPLUS) and t.state != TrialState.WAITING]


def summary(study: optuna.Study, spec: StudySpec, *,
            importance: str | None = "auto") -> dict[str, Any]:
    """Everything `report` shows, as one JSON-able dict (``importance=None`` skips that part)."""
    trials = reported_trials(study)
    best = best_trial(study)
    rows = [_trial_row(t, spec) for t in trials]
    return {
        "study": study.study_name,
        "metric": spec.metric,
        "direction": spec.direction,
        "n_trials_budget": spec.budget.n_trials,
        # Compute: every epoch trained (failed and lost trials too) against budget.epochs.
        "compute": {"epochs_spent": budget.epochs_spent(trials),
                    "epochs_budget": spec.budget.epochs},
        "counts": count_trials(trials),
        "best": None if best is None else {
            "number": best.number,
            "value": _clean(best.values[0]),
            "params": space.trial_config(spec.space, best.params),
            attrs.BEST_EPOCH: best.user_attrs.get(attrs.BEST_EPOCH),
            attrs.SPREAD: best.user_attrs.get(attrs.SPREAD),  # trainer.repeats / cv
            attrs.HISTORY: best.user_attrs.get(attrs.HISTORY, []),
        },
        "epochs": effort(trials, spec.trainer.epochs),
        "failures": failure_reasons(trials),
        "fused": fused_groups(trials),
        "objectives": [{"metric": m, "direction": d}
                       for m, d in zip(spec.objective_names, spec.directions, strict=True)],
        "constraints": list(spec.constraints),
        # The feasible non-dominated trials, best first on the first objective.
        "front": [r["number"] for r in _front_rows(study, rows)] if spec.multi_objective
        else None,
        "importances": importances(study, spec, importance) if importance else None,
        "trials": rows,
    }


_NUMBER_RE = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|\b(?:nan|inf)\b")


def failure_reasons(trials: list[FrozenTrial]) -> list[dict[str, Any]]:
    """Why trials failed, grouped: reasons that differ only in their numbers (an epoch, a
    learning rate) are one group, with its count and the first trial as the example."""
    groups: dict[str, dict[str, Any]] = {}
    for t in trials:
        if kind_of(t) != "failed":
            continue
        reason = str(t.user_attrs.get(attrs.FAIL_REASON, "unknown error"))
        group = groups.setdefault(_NUMBER_RE.sub("#", reason),
                                  {"reason": reason, "count": 0, "example": t.number})
        group["count"] += 1
    return sorted(groups.values(), key=lambda g: (-g["count"], g["example"]))


def _epochs_of(t: FrozenTrial) -> int:
    return int(t.user_attrs.get(attrs.EPOCHS_RUN, budget.epochs_reported(t)))


def _seconds_per_epoch(t: FrozenTrial) -> float:
    history = t.user_attrs.get(attrs.HISTORY) or []
    # A fused member's epoch is its group's: its share is the group's / the members then.
    together = 1 + len(t.user_attrs.get(attrs.FUSED_WITH, []))
    times = [h["epoch_seconds"] / h.get("fused_members", together) for h in history
             if "epoch_seconds" in h]
    if times:
        return float(sum(times)) / len(times)
    epochs = _epochs_of(t)
    return t.duration.total_seconds() / epochs if t.duration and epochs else 0.0


def _fused_group(t: FrozenTrial) -> Any:
    """Which fused group ``t`` trained in: its first trial's number (``fused_group``; studies
    from before refills: the members' numbers)."""
    group = t.user_attrs.get(attrs.FUSED_GROUP)
    return group if group is not None else frozenset([t.number, *t.user_attrs[attrs.FUSED_WITH]])


def fused_groups(trials: list[FrozenTrial]) -> dict[str, int] | None:
    """How many trials trained in fused groups, in how many groups, the largest's size."""
    groups: dict[Any, set[int]] = {}
    for t in trials:
        if t.user_attrs.get(attrs.FUSED_WITH):
            groups.setdefault(_fused_group(t), set()).add(t.number)
    if not groups:
        return None
    return {"trials": sum(len(g) for g in groups.values()), "groups": len(groups),
            "largest": max(len(g) for g in groups.values())}


def _seconds_spent(trials: list[FrozenTrial]) -> float:
    """Trial time, summed over trials (workers' trials add up), with a fused group's trials,
    which trained at the same time, counted once: from its first start to its last end."""
    spent = 0.0
    groups: dict[Any, list[FrozenTrial]] = {}
    for t in trials:
        if t.user_attrs.get(attrs.FUSED_WITH):
            groups.setdefault(_fused_group(t), []).append(t)
        elif t.duration:
            spent += t.duration.total_seconds()
    for members in groups.values():
        starts = [t.datetime_start for t in members if t.datetime_start]
        ends = [t.datetime_complete for t in members if t.datetime_complete]
        if starts and ends:
            spent += (max(ends) - min(starts)).total_seconds()
    return spent


def effort(trials: list[FrozenTrial], epochs_per_trial: int) -> dict[str, Any]:
    """Epochs and seconds spent, and what pruning and early stopping saved.

    Saved = the epochs a stopped trial did not train (up to ``trainer.epochs``); its seconds
    are estimated from that trial's own mean epoch time.
    """
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    spent = sum(_epochs_of(t) for t in finished)
    saved = {"pruning": 0, "early_stopping": 0, "constraints": 0}
    saved_s = {"pruning": 0.0, "early_stopping": 0.0, "constraints": 0.0}
    for t in finished:
        # A trial cut short by the compute budget (its claim) saved nothing: it could not run.
        allowed = min(epochs_per_trial, int(t.user_attrs.get(attrs.EPOCH_CLAIM, epochs_per_trial)))
        left = max(0, allowed - _epochs_of(t))
        cause = ("constraints" if t.user_attrs.get(attrs.INFEASIBLE) else
                 "pruning" if t.state == TrialState.PRUNED else "early_stopping")
        saved[cause] += left
        saved_s[cause] += left * _seconds_per_epoch(t)
    return {
        "spent": spent,
        "budgeted": epochs_per_trial * len(finished),
        "saved_by_pruning": saved["pruning"],
        "saved_by_early_stopping": saved["early_stopping"],
        # Trials whose architecture broke a constraint: measured, never trained.
        "saved_by_constraints": saved["constraints"],
        "seconds_spent": round(_seconds_spent(finished), 3),
        "seconds_saved": round(sum(saved_s.values()), 3),
    }


IMPORTANCE_METHODS = ("auto", "ped-anova", "fanova", "mdi")
# PED-ANOVA contrasts the top 10 % of trials with the rest and wants 5 or more there; below
# that (under ~50 completed trials) fANOVA, which uses every trial, is the steadier choice.
_PED_ANOVA_FROM = 41


def importance_evaluator(method: str) -> Any:
    """ped-anova: Optuna 5's default, fast, weighs what reaches the top 10 %; fanova:
    random-forest functional ANOVA over the whole space, slower on thousands of trials; mdi:
    mean decrease in impurity of a random forest."""
    if method == "fanova":
        return optuna.importance.FanovaImportanceEvaluator(seed=0)
    if method == "mdi":
        return optuna.importance.MeanDecreaseImpurityImportanceEvaluator(seed=0)
    return optuna.importance.PedAnovaImportanceEvaluator()


FEW_FOR_IMPORTANCES = 10  # below this many completed trials importances are a first hint


def importances(study: optuna.Study, spec: StudySpec, method: str = "auto"
                ) -> dict[str, Any]:
    """Parameter importances over the completed trials, most important first.

    ``auto``: PED-ANOVA from 41 completed trials on (fast on thousands), fANOVA below.
    Optuna can only weigh parameters every completed trial has; conditional ones that some
    trials lack are listed in ``left_out`` rather than silently missing.
    """
    result: dict[str, Any] = {"method": method, "values": {}, "left_out": [], "note": None,
                              "n_trials": 0}
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 3:
        result["note"] = f"needs at least 3 completed trials (this study has {len(complete)})"
        return result
    common = set.intersection(*(set(t.params) for t in complete))
    every = set().union(*(set(t.params) for t in complete))
    result["left_out"] = [k for k in spec.space if k in every - common]
    # A parameter that took one value in every completed trial explains nothing.
    varied = [k for k in spec.space if k in common
              and len({repr(t.params[k]) for t in complete}) > 1]
    if not varied:
        result["note"] = "no searched parameter varied across the completed trials"
        return result
    if method == "auto":
        method = "ped-anova" if len(complete) >= _PED_ANOVA_FROM else "fanova"
        result["method"] = method
    evaluator = importance_evaluator(method)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Sorted: Optuna 5.0's MDI evaluator pairs names with columns in sorted order and
            # mislabels the importances of an unsorted ``params`` list.
            values = optuna.importance.get_param_importances(
                study, evaluator=evaluator, params=sorted(varied),
                target=first_objective(study))
    except (RuntimeError, ValueError, ZeroDivisionError):
        # Optuna's own words (e.g. a zero variance) say nothing to a user: say what happened
        result["note"] = (f"{method} could not weigh the parameters: the completed trials' "
                          f"{spec.metric} did not vary enough to tell them apart")
        return result
    result["values"] = {k: round(float(v), 4) for k, v in values.items()}
    result["n_trials"] = len(complete)
    top = math.ceil(0.1 * len(complete))
    if method == "ped-anova" and len(complete) < _PED_ANOVA_FROM:
        result["note"] = (f"rough: PED-ANOVA weighs the top 10 % ({top} trial"
                          f"{'s' if top > 1 else ''} here); --importance fanova uses every trial")
    elif len(complete) < FEW_FOR_IMPORTANCES:
        result["note"] = (f"rough: from {len(complete)} completed trials only; with fewer than "
                          f"{FEW_FOR_IMPORTANCES} the order can change with every new trial")
    return result


def _front_rows(study: optuna.Study, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from tunecli.engine.strategy.objectives import pareto_front

    by_number = {r["number"]: r for r in rows}
    return [by_number[t.number] for t in pareto_front(study) if t.number in by_number]


def front(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The Pareto front's trial rows (empty for a single-objective study)."""
    by_number = {r["number"]: r for r in data["trials"]}
    return [by_number[n] for n in data.get("front") or []]


def ranked(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Completed trials of a summary, best first."""
    complete = [r for r in data["trials"] if r["state"] == "complete" and r["value"] is not None]
    return sorted(complete, key=lambda r: r["value"], reverse=data["direction"] == "maximize")


def format_value(value: Any) -> str:
    """How every report writes a value: 4 significant digits, '-' for none."""
    if value is None:
        return "-"
    if isinstance(value, int | float) and not isinstance(value, bool) and abs(value) >= 1e4:
        return f"{value:,.0f}"  # counts such as parameters: 26,120, not 2.612e+04
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def effort_line(epochs: dict[str, Any]) -> str:
    """'epochs 312 of 800 (61% saved: pruning 55%, early stopping 6%); time 41s, ~38s saved'."""
    if not epochs["budgeted"]:
        return ""
    total = epochs["budgeted"]
    pruned, early = epochs["saved_by_pruning"], epochs["saved_by_early_stopping"]
    constrained = epochs.get("saved_by_constraints", 0)
    causes = [f"pruning {pruned / total:.0%}"] + (
        [f"early stopping {early / total:.0%}"] if early else []) + (
        [f"constraints {constrained / total:.0%}"] if constrained else [])
    saved = pruned + early + constrained
    return (f"epochs trained {epochs['spent']} of {total} ({saved / total:.0%} saved: "
            f"{', '.join(causes)}); time {_duration(epochs['seconds_spent'])}, "
            f"about {_duration(epochs['seconds_saved'])} saved")


def _cell(value: Any) -> Any:
    return "" if value is None else value


def to_json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, default=str)


def to_csv(data: dict[str, Any]) -> str:
    """One row per trial, one column per parameter."""
    keys = list(dict.fromkeys(k for r in data["trials"] for k in r["params"]))
    several = [o["metric"] for o in data.get("objectives") or []][1:] \
        if data.get("front") is not None else []
    on_front = set(data.get("front") or [])
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["number", "state", "value", *several,
                     *(["pareto_front"] if several else []), "epochs", "duration_s", *keys,
                     "fail_reason", "fused_group", "fused_with"])
    for r in data["trials"]:
        values = r.get("values") or {}
        writer.writerow([r["number"], r["state"], "" if r["value"] is None else r["value"],
                         *(_cell(values.get(m, (r.get("measures") or {}).get(m)))
                           for m in several),
                         *([int(r["number"] in on_front)] if several else []),
                         r["epochs"], r["duration_s"], *(r["params"].get(k, "") for k in keys),
                         r["fail_reason"] or r.get("infeasible") or "",
                         "" if r.get("fused_group") is None else r["fused_group"],
                         " ".join(str(n) for n in r.get("fused_with", []))])
    return out.getvalue()
