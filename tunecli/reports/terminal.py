"""The terminal report of one study (fits 100 columns): counts, effort saved, the best
configuration, parameter importances, the top trials."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tunecli.reports.live import format_params
from tunecli.reports.summary import effort_line, format_value, front, ranked

__all__ = ["show"]


def _importance_table(imp: dict[str, Any], width: int = 30) -> Table:
    table = Table(box=None, padding=(0, 2, 0, 2), show_header=False)
    table.add_column("parameter")
    table.add_column("bar")
    table.add_column("share", justify="right")
    for key, value in imp["values"].items():
        table.add_row(key, "█" * round(value * width) or "▏", f"{value:.0%}")
    return table


def _aims(data: dict[str, Any]) -> str:
    """'maximize val_accuracy', or for several objectives 'max val_accuracy, min params'."""
    if data.get("front") is None:
        return f"{data['direction']} {data['metric']}"
    return ", ".join(f"{o['direction'][:3]} {o['metric']}" for o in data["objectives"])


def _constraints(console: Console, data: dict[str, Any]) -> None:
    if not data.get("constraints"):
        return
    rows = data["trials"]
    before = sum(1 for r in rows if r.get("infeasible"))
    after = sum(1 for r in rows if r.get("feasible") is False and not r.get("infeasible"))
    console.print(f"constraints: {', '.join(data['constraints'])}; infeasible: {before} "
                  f"stopped before training, {after} after", highlight=False)


def _front_table(console: Console, data: dict[str, Any]) -> None:
    """The Pareto front: one row per trial, each objective a column, first objective first."""
    rows = front(data)
    names = [o["metric"] for o in data["objectives"]]
    if not rows:
        console.print("Pareto front: no feasible trial has completed yet.")
        return
    console.print(f"[bold]Pareto front[/] ({len(rows)} trials; "
                  + ", ".join(f"{o['direction'][:3]} {o['metric']}" for o in data["objectives"])
                  + ")", highlight=False)
    table = Table(box=None, padding=(0, 1, 0, 1))
    table.add_column("#", justify="right")
    for name in names:
        table.add_column(name, justify="right")
    table.add_column("parameters", overflow="fold", max_width=60)
    for r in rows:
        values = r.get("values") or {}
        table.add_row(str(r["number"]), *(format_value(values.get(n)) for n in names),
                      format_params(r["params"], limit=len(r["params"])))
    console.print(table)


def show(console: Console, data: dict[str, Any], top: int = 10) -> None:
    """The terminal report (fits 100 columns): counts, effort saved, best configuration,
    parameter importances, the top trials."""
    _counts(console, data)
    _constraints(console, data)
    if data.get("front") is not None:
        _front_table(console, data)
    best = data["best"]
    if best is None:
        console.print("No trial has completed yet.")
        return
    _best(console, data, best)
    _importances(console, data.get("importances"))
    _leaders(console, data, ranked(data)[:top])


def _counts(console: Console, data: dict[str, Any]) -> None:
    """The counts, the effort saved, the compute spent, the fused groups, the failures."""
    c = data["counts"]
    console.print(f"[bold]{data['study']}[/]: {_aims(data)}  "
                  f"finished {c['finished']} (complete {c['complete']}, pruned {c['pruned']})  "
                  f"failed {c['failed']}"
                  + (f"  lost {c['lost']} (retried)" if c["lost"] else "")
                  + (f"  running {c['running']}" if c["running"] else "")
                  + (f"  (budget {data['n_trials_budget']} finished)"
                     if data["n_trials_budget"] else ""), highlight=False)
    line = effort_line(data["epochs"])
    if line:
        console.print(line, highlight=False)
    used = data.get("compute") or {}
    if used.get("epochs_budget"):
        console.print(f"compute: {used['epochs_spent']} of {used['epochs_budget']} epochs "
                      "spent (budget.epochs)", highlight=False)
    fused = data.get("fused")
    if fused:
        groups = fused["groups"]
        console.print(f"fused: {fused['trials']} trials trained in {groups} "
                      f"group{'s' if groups != 1 else ''} of up to {fused['largest']} "
                      "(fused_with in --format json)",
                      highlight=False)
    for group in data.get("failures") or []:
        console.print(f"[red]failed ×{group['count']}[/] (e.g. trial #{group['example']}): "
                      f"{escape(group['reason'])}", highlight=False, soft_wrap=True)


def _best(console: Console, data: dict[str, Any], best: dict[str, Any]) -> None:
    spread = best.get("spread")
    console.print(f"[bold]Best trial #{best['number']}[/]: {data['metric']} = "
                  f"{format_value(best['value'])}"
                  + (f" ± {format_value(spread['std'])} (mean of {spread['runs']} "
                     f"{'folds' if spread['kind'] == 'cv' else 'runs'}: "
                     f"{', '.join(format_value(v) for v in spread['values'])})"
                     if spread else "")
                  + (f" at epoch {best['best_epoch']}" if best.get("best_epoch") else ""),
                  highlight=False)
    table = Table(show_header=True, box=None, padding=(0, 2, 0, 2))
    table.add_column("parameter")
    table.add_column("value")
    for key, value in best["params"].items():
        table.add_row(key, format_value(value))
    console.print(table)


def _importances(console: Console, imp: dict[str, Any] | None) -> None:
    if not imp:
        return
    if not imp["values"]:
        if imp["note"]:
            console.print(f"Parameter importances: {imp['note']}", highlight=False)
        return
    console.print(f"[bold]Parameter importances[/] ({imp['method']}, "
                  f"{imp['n_trials']} completed trials)", highlight=False)
    console.print(_importance_table(imp))
    if imp["note"]:
        console.print(f"  {imp['note']}", highlight=False)
    if imp["left_out"]:
        console.print(f"  not weighed (conditional, absent from some trials): "
                      f"{', '.join(imp['left_out'])}", highlight=False)


def _leaders(console: Console, data: dict[str, Any], leaders: list[dict[str, Any]]) -> None:
    if len(leaders) <= 1:
        return
    console.print(f"[bold]Top {len(leaders)} trials[/] ({data['metric']} at the best epoch, "
                  "and at the last)", highlight=False)
    table = Table(box=None, padding=(0, 1, 0, 1))
    table.add_column("#", justify="right")
    table.add_column("best", justify="right")
    table.add_column("last", justify="right")
    table.add_column("epochs", justify="right")
    table.add_column("parameters", overflow="fold", max_width=72)
    for r in leaders:
        table.add_row(str(r["number"]), format_value(r["value"]),
                      format_value(r.get("last_value")), str(r["epochs"]),
                      format_params(r["params"], limit=len(r["params"])))
    console.print(table)
