"""Two or more studies side by side: how fast each found a good value, in trials and in epochs.

The question a comparison answers is "which sampler/pruner gets there cheaper?", so each study
becomes a best-so-far curve over trials finished (in the order they finished) and over epochs
trained (pruned trials count the epochs they used).
"""

from __future__ import annotations

import csv
import io
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tunecli import attrs
from tunecli.engine.search import budget
from tunecli.reports.summary import effort_line, format_value, reported_trials, summary
from tunecli.spec import StudySpec

__all__ = ["best_so_far", "comparison", "show", "to_csv"]

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def best_so_far(trials: list[FrozenTrial], direction: str) -> dict[str, list[float]]:
    """Curves over finished trials in finishing order: trials, cumulative epochs, best value.

    Points start at the first completed trial (before it there is no best value).
    """
    done = sorted((t for t in trials if t.state in _FINISHED and t.datetime_complete),
                  key=lambda t: (t.datetime_complete, t.number))
    curve: dict[str, list[float]] = {"trials": [], "epochs": [], "best": []}
    best: float | None = None
    epochs = 0
    for k, t in enumerate(done, start=1):
        epochs += int(t.user_attrs.get(attrs.EPOCHS_RUN, budget.epochs_reported(t)))
        value = t.values[0] if t.state == TrialState.COMPLETE and t.values else None
        if value is not None and (best is None or (value > best if direction == "maximize"
                                                   else value < best)):
            best = value
        if best is not None:
            curve["trials"].append(k)
            curve["epochs"].append(epochs)
            curve["best"].append(best)
    return curve


def comparison(studies: list[tuple[optuna.Study, StudySpec]]) -> dict[str, Any]:
    """Summaries and best-so-far curves of several studies, as one JSON-able dict."""
    out: dict[str, Any] = {"studies": {}, "curves": {}, "notes": []}
    for study, spec in studies:
        data = summary(study, spec, importance=None)
        data.pop("trials")
        out["studies"][spec.name] = {**data, "sampler": spec.sampler.type,
                                     "pruner": spec.pruner.type}
        out["curves"][spec.name] = best_so_far(reported_trials(study), spec.direction)
    _by_hypervolume(studies, out)
    metrics = {(s["metric"], s["direction"]) for s in out["studies"].values()}
    if len(metrics) > 1:
        out["notes"].append("the studies optimise different metrics or directions: "
                            + "; ".join(f"{n}: {s['direction']} {s['metric']}"
                                        for n, s in out["studies"].items()))
    first = next(iter(out["studies"].values()))
    out["metric"], out["direction"] = first["metric"], first["direction"]
    if out.get("by") == "hypervolume":
        out["metric"], out["direction"] = "hypervolume", "maximize"
    return out


def _by_hypervolume(studies: list[tuple[optuna.Study, StudySpec]], out: dict[str, Any]) -> None:
    """Multi-objective studies of the same objectives are compared by their fronts'
    hypervolume (one reference point for all), not by the first objective alone."""
    from tunecli.reports.hypervolume import hypervolume_curve, reference_point

    aims = {(tuple(spec.objective_names), tuple(spec.directions)) for _, spec in studies}
    if len(aims) != 1 or not all(spec.multi_objective for _, spec in studies):
        return
    names, directions = next(iter(aims))
    trial_lists = [reported_trials(study) for study, _ in studies]
    reference = reference_point(trial_lists, directions)
    if reference is None:
        return
    for (_, spec), trials in zip(studies, trial_lists, strict=True):
        curve = hypervolume_curve(trials, directions, reference)
        out["curves"][spec.name] = {"trials": curve["trials"], "epochs": curve["epochs"],
                                    "best": curve["hypervolume"]}
        out["studies"][spec.name]["hypervolume"] = curve["hypervolume"][-1] \
            if curve["hypervolume"] else 0.0
    out["by"] = "hypervolume"
    out["notes"].append("multi-objective studies (" + ", ".join(
        f"{d} {n}" for n, d in zip(names, directions, strict=True)) + ") are compared by the "
        "hypervolume of their Pareto fronts, from the worst feasible value of each objective "
        "over all of them: " + ", ".join(f"{k}: {format_value(v.get('hypervolume'))}"
                                         for k, v in out["studies"].items()))


def _at(curve: dict[str, list[float]], axis: str, limit: float) -> float | None:
    """The best value once ``limit`` trials/epochs were spent (None: nothing complete yet, or
    the study never spent that much)."""
    if not curve[axis] or curve[axis][-1] < limit:
        return None
    value = None
    for x, best in zip(curve[axis], curve["best"], strict=True):
        if x > limit:
            break
        value = best
    return value


def _marks(largest: float) -> list[int]:
    """Four round checkpoints up to ``largest``."""
    if largest <= 0:
        return []
    marks = sorted({max(1, round(largest * q)) for q in (0.125, 0.25, 0.5, 1.0)})
    return [int(m) for m in marks]


def show(console: Console, data: dict[str, Any]) -> None:
    """One column per study: set-up, best value, and best-so-far at equal trials and epochs
    ("-": no trial had completed by then, or the study never spent that much)."""
    names = list(data["studies"])
    metric = data["metric"]
    table = Table(title=f"best {metric} so far ({data['direction']})", title_justify="left",
                  box=None, padding=(0, 1, 0, 1))
    table.add_column("")
    for name in names:
        table.add_column(name, justify="right", overflow="fold", max_width=24)

    def row(label: str, cells: list[str]) -> None:
        table.add_row(label, *cells)

    studies, curves = data["studies"], data["curves"]
    row("sampler / pruner", [f"{studies[n]['sampler']} / {studies[n]['pruner']}" for n in names])
    row("trials finished", [str(len(curves[n]["trials"]) and curves[n]["trials"][-1])
                            for n in names])
    row("failed", [str(studies[n]["counts"]["failed"]) for n in names])
    row("epochs trained", [str(studies[n]["epochs"]["spent"]) for n in names])
    row("training time", [f"{studies[n]['epochs']['seconds_spent']:.0f}s" for n in names])
    row("best", [format_value(studies[n]["best"]["value"] if studies[n]["best"] else None)
                 for n in names])
    if data.get("by") == "hypervolume":
        row("hypervolume", [format_value(studies[n].get("hypervolume")) for n in names])
    for axis in ("trials", "epochs"):
        largest = max((c[axis][-1] for c in curves.values() if c[axis]), default=0)
        for mark in _marks(largest):
            unit = axis if mark > 1 else axis[:-1]
            row(f"after {mark} {unit}", [format_value(_at(curves[n], axis, mark)) for n in names])
    console.print(table)
    for name in names:
        line = effort_line(studies[name]["epochs"])
        if line:
            console.print(f"{name}: {line}", highlight=False)
    for name in names:
        for group in studies[name].get("failures") or []:
            console.print(f"{escape(name)}: [red]failed ×{group['count']}[/] (e.g. trial "
                          f"#{group['example']}): {escape(group['reason'])}", highlight=False,
                          soft_wrap=True)
    for note in data["notes"]:
        console.print(f"[yellow]note:[/] {note}", highlight=False)


def to_csv(data: dict[str, Any]) -> str:
    """The curves in long form: one row per study and finished trial."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["study", "trials_finished", "epochs_trained", f"best_{data['metric']}"])
    for name, curve in data["curves"].items():
        for k, epochs, best in zip(curve["trials"], curve["epochs"], curve["best"], strict=True):
            writer.writerow([name, k, epochs, best])
    return out.getvalue()
