"""From a stored study to what people read: tables, JSON, CSV and a best-config study file.

Everything here reads the storage alone; the spec travels with the study.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.table import Table

from tunecli import space
from tunecli.progress import format_params
from tunecli.spec import StudySpec
from tunecli.study import best_trial, count_trials
from tunecli.yamlio import dump_yaml

__all__ = ["summary", "show", "to_json", "to_csv", "best_study_yaml"]


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _trial_row(t: FrozenTrial, spec: StudySpec) -> dict[str, Any]:
    return {
        "number": t.number,
        "state": t.state.name.lower(),
        "value": _clean(t.value) if t.state == TrialState.COMPLETE else None,
        "last_value": _clean(t.intermediate_values[t.last_step]) if t.last_step else None,
        "epochs": t.user_attrs.get("epochs_run", len(t.intermediate_values)),
        "params": space.trial_config(spec.space, t.params),
        "duration_s": round(t.duration.total_seconds(), 3) if t.duration else None,
        "params_count": t.user_attrs.get("params_count"),
        "fail_reason": t.user_attrs.get("fail_reason"),
        "retry_of": t.user_attrs.get("retry_of"),
    }


def summary(study: optuna.Study, spec: StudySpec) -> dict[str, Any]:
    """Everything `report` shows, as one JSON-able dict."""
    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("surplus")]
    best = best_trial(study)
    rows = [_trial_row(t, spec) for t in trials]
    return {
        "study": study.study_name,
        "metric": spec.metric,
        "direction": spec.direction,
        "n_trials_budget": spec.budget.n_trials,
        "counts": count_trials(trials),
        "best": None if best is None else {
            "number": best.number,
            "value": _clean(best.value),
            "params": space.trial_config(spec.space, best.params),
            "best_epoch": best.user_attrs.get("best_epoch"),
            "history": best.user_attrs.get("history", []),
        },
        "epochs": {
            "spent": sum(r["epochs"] or 0 for r in rows),
            "budgeted": spec.trainer.epochs * len(rows),
        },
        "trials": rows,
    }


def _ranked(data: dict[str, Any]) -> list[dict[str, Any]]:
    complete = [r for r in data["trials"] if r["state"] == "complete" and r["value"] is not None]
    return sorted(complete, key=lambda r: r["value"], reverse=data["direction"] == "maximize")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def show(console: Console, data: dict[str, Any], top: int = 10) -> None:
    """The terminal report: counts, best configuration, the top trials."""
    c = data["counts"]
    console.print(f"[bold]{data['study']}[/]: {data['direction']} {data['metric']}  "
                  f"complete {c['complete']}  pruned {c['pruned']}  failed {c['fail']}  "
                  f"running {c['running']}"
                  + (f"  (budget {data['n_trials_budget']} finished)"
                     if data["n_trials_budget"] else ""), highlight=False)
    epochs = data["epochs"]
    if epochs["budgeted"]:
        saved = 1 - epochs["spent"] / epochs["budgeted"]
        console.print(f"epochs trained {epochs['spent']} of {epochs['budgeted']} "
                      f"({saved:.0%} saved by pruning and early stopping)", highlight=False)
    best = data["best"]
    if best is None:
        console.print("No trial has completed yet.")
        return
    console.print(f"[bold]Best trial #{best['number']}[/]: {data['metric']} = "
                  f"{_fmt(best['value'])}" + (f" at epoch {best['best_epoch']}"
                                              if best.get("best_epoch") else ""),
                  highlight=False)
    table = Table(show_header=True, box=None, padding=(0, 2, 0, 2))
    table.add_column("parameter")
    table.add_column("value")
    for key, value in best["params"].items():
        table.add_row(key, _fmt(value))
    console.print(table)
    ranked = _ranked(data)[:top]
    if len(ranked) > 1:
        console.print(f"[bold]Top {len(ranked)} trials[/]")
        table = Table(box=None, padding=(0, 1, 0, 1))
        table.add_column("#", justify="right")
        table.add_column(data["metric"], justify="right")
        table.add_column("epochs", justify="right")
        table.add_column("parameters", overflow="fold")
        for r in ranked:
            table.add_row(str(r["number"]), _fmt(r["value"]), str(r["epochs"]),
                          format_params(r["params"], limit=len(r["params"])))
        console.print(table)


def to_json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, default=str)


def to_csv(data: dict[str, Any]) -> str:
    """One row per trial, one column per parameter."""
    keys = list(dict.fromkeys(k for r in data["trials"] for k in r["params"]))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["number", "state", "value", "epochs", "duration_s", *keys, "fail_reason"])
    for r in data["trials"]:
        writer.writerow([r["number"], r["state"], "" if r["value"] is None else r["value"],
                         r["epochs"], r["duration_s"], *(r["params"].get(k, "") for k in keys),
                         r["fail_reason"] or ""])
    return out.getvalue()


def best_study_yaml(spec: StudySpec, data: dict[str, Any]) -> str:
    """A study file whose space is fixed to the best configuration, ready to run again."""
    best = data["best"]
    stored = spec.stored()
    stored["name"] = f"{spec.name}-best"
    stored["space"] = {key: {"value": value} for key, value in best["params"].items()}
    stored["budget"] = {**stored["budget"], "n_trials": 1, "timeout": None}
    stored["sampler"] = {"type": "random", "seed": spec.sampler.seed}
    stored["pruner"] = {"type": "none"}
    if spec.base_dir and stored["trainer"].get("data_root") is None:
        stored["trainer"].pop("data_root", None)
    header = (f"# Best configuration of study '{spec.name}' (trial #{best['number']}, "
              f"{data['metric']} = {_fmt(best['value'])}).\n"
              f"# Run it again: tunecli search THIS_FILE\n")
    return header + dump_yaml(stored)
