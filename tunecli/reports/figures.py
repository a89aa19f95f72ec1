"""Plotly figures of a study, for the HTML report.

Optuna's visualization module draws the optimization history, importances, parallel
coordinates and slices; the learning curves (pruned trials marked where they stopped) and the
study comparison are drawn here because Optuna has no such figure. Plotly is imported here
only, so ``tunecli --help`` stays fast.
"""

from __future__ import annotations

import warnings
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tunecli.engine.strategy.objectives import epoch_curve, first_objective

__all__ = ["comparison", "learning_curves", "slices", "study_figures"]

# The states in Optuna's own timeline colours (blue, orange, red), so a pruned trial looks the
# same in every figure of the report.
_COLOURS = {"complete": "rgba(31,119,180,0.45)", "pruned": "rgba(255,127,14,0.55)",
            "fail": "rgba(214,39,40,0.6)", "best": "rgb(44,160,44)"}


def learning_curves(trials: list[FrozenTrial], metric: str, best: int | None,
                    minimize: bool = False) -> Any:
    """Every trial's metric by epoch; pruned trials end in an x where the pruner stopped them."""
    import plotly.graph_objects as go

    fig = go.Figure()
    shown: set[str] = set()
    for t in sorted(trials, key=lambda t: t.number == best):  # the best is drawn on top
        steps, values = epoch_curve(t, metric)
        if not steps:
            continue
        kind = "best" if t.number == best else t.state.name.lower()
        if kind not in _COLOURS:
            continue
        name = {"best": f"best (#{t.number})", "complete": "complete",
                "pruned": "pruned (x: stopped)", "fail": "failed"}[kind]
        fig.add_trace(go.Scatter(
            x=steps, y=values, mode="lines", name=name, legendgroup=kind,
            showlegend=kind not in shown, line={"color": _COLOURS[kind],
                                                "width": 3 if kind == "best" else 1.2},
            hovertemplate=f"trial #{t.number} ({t.state.name.lower()})<br>epoch %{{x}}"
                          f"<br>{metric} %{{y:.4g}}<extra></extra>"))
        shown.add(kind)
        if kind == "pruned":
            fig.add_trace(go.Scatter(
                x=[steps[-1]], y=[values[-1]], mode="markers", legendgroup=kind,
                showlegend=False, marker={"symbol": "x", "size": 8, "color": _COLOURS[kind]},
                hovertemplate=f"trial #{t.number} pruned after epoch {steps[-1]}<extra></extra>"))
    fig.update_layout(xaxis_title="epoch", yaxis_title=metric, template="plotly_white")
    _zoom_one_click_away(fig, trials, minimize)
    return fig


def _zoom_one_click_away(fig: Any, trials: list[FrozenTrial], minimize: bool) -> None:
    """Every curve whole by default (the best trial's early epochs and the pruned curves
    included), and a button to zoom on the values that matter: from the worst completed
    trial's final value to the best value seen (where the good trials, a knot of lines in the
    whole range, part)."""
    every = [v for t in trials for v in t.intermediate_values.values()]
    finals = [t.intermediate_values[max(t.intermediate_values)] for t in trials
              if t.state == TrialState.COMPLETE and t.intermediate_values]
    if len(finals) < 2 or not every:
        return
    low, high = ((min(every), max(finals)) if minimize else (min(finals), max(every)))
    margin = (high - low) * 0.08 or abs(high) * 0.01 or 0.01
    zoomed = [low - margin, high + margin]
    if zoomed[0] <= min(every) and zoomed[1] >= max(every):
        return  # everything fits already
    fig.update_layout(updatemenus=[{
        "type": "buttons", "direction": "right", "x": 0, "xanchor": "left", "y": 1.12,
        "showactive": True, "active": 0, "buttons": [
            {"label": "all values", "method": "relayout",
             "args": [{"yaxis.autorange": True}]},
            {"label": "zoom on the best", "method": "relayout",
             "args": [{"yaxis.range": zoomed, "yaxis.autorange": False}]}]}])


def _unquoted(value: Any) -> Any:
    """Optuna writes categorical slice labels with repr's quotes ('adam'); users wrote adam."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1]
    return value


def slices(study: optuna.Study, params: list[str], metric: str) -> Any:
    """Optuna's slice plot, one panel per parameter in the order given (most important first;
    Optuna sorts them by name), categorical labels without quotes."""
    from optuna import visualization as vis
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(params), shared_yaxes=True)
    for column, name in enumerate(params, start=1):
        single = vis.plot_slice(study, params=[name], target_name=metric,
                                target=first_objective(study))
        for trace in single.data:
            trace.x = tuple(_unquoted(x) for x in trace.x or ())
            trace.marker.showscale = column == 1
            fig.add_trace(trace, row=1, col=column)
        axis = single.layout.xaxis
        fig.update_xaxes(title_text=name, type=axis.type, row=1, col=column,
                         categoryorder=axis.categoryorder,
                         categoryarray=[_unquoted(c) for c in axis.categoryarray or []] or None)
    fig.update_yaxes(title_text=metric, row=1, col=1)
    return fig


def study_figures(study: optuna.Study, data: dict[str, Any], trials: list[FrozenTrial]
                  ) -> dict[str, tuple[str, Any | None, str]]:
    """Section id -> (title, figure or None, note). A None figure carries the reason."""
    from optuna import visualization as vis

    metric = data["metric"]
    best = data["best"]["number"] if data["best"] else None
    imp = data["importances"] or {"values": {}, "note": "not computed", "method": "-"}
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    out: dict[str, tuple[str, Any | None, str]] = {}
    # Optuna warns (experimental features, few trials); the report says what it skipped.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["history"] = ("Optimization history", _history(study, metric, complete),
                          "Each completed trial's value and the best so far.") if complete \
            else ("Optimization history", None, "No trial has completed yet.")
        minimize = study.directions[0] == optuna.study.StudyDirection.MINIMIZE
        out["curves"] = ("Learning curves", learning_curves(trials, metric, best, minimize),
                         "Pruned trials stop early; the x marks the epoch the pruner stopped. "
                         "Every curve whole; the button zooms on the best trials.")
        out.update(_by_importance(study, imp, metric, len(complete)))
        if len(study.directions) > 1:
            out.update(_several_objectives(study, data, trials))
        out["timeline"] = ("Timeline", vis.plot_timeline(study),
                           "When each trial ran and how it ended; parallel workers overlap.")
    for _, fig, _ in out.values():
        if fig is not None:
            # The page gives each figure its section title and full width (Optuna fixes the
            # slice plot's width to 300 px per parameter, wider than the page).
            fig.layout.width = None
            fig.layout.title = None
            fig.update_layout(template="plotly_white", margin={"t": 30, "b": 50})
    return out


def _by_importance(study: optuna.Study, imp: dict[str, Any], metric: str, complete: int
                   ) -> dict[str, tuple[str, Any | None, str]]:
    """The figures that order parameters by importance: the importances themselves, parallel
    coordinates and slice plots of the most important."""
    from optuna import visualization as vis

    from tunecli.reports.summary import importance_evaluator

    ranked = list(imp["values"])
    out: dict[str, tuple[str, Any | None, str]] = {}
    if ranked:
        evaluator = importance_evaluator(imp["method"])
        out["importances"] = (
            "Parameter importances",
            vis.plot_param_importances(study, evaluator=evaluator, params=sorted(ranked),
                                       target_name=metric, target=first_objective(study)),
            f"{imp['method']} over {imp['n_trials']} completed trials"
            + (f" ({imp['note']})." if imp["note"] else ".")
            + (f" Not weighed (conditional): {', '.join(imp['left_out'])}."
               if imp["left_out"] else ""))
    else:
        out["importances"] = ("Parameter importances", None, imp["note"] or "")
    if complete >= 2 and ranked:
        out["parallel"] = ("Parallel coordinates",
                           vis.plot_parallel_coordinate(study, params=ranked[:8],
                                                        target_name=metric,
                                                        target=first_objective(study)),
                           "Completed trials, one line each; drag along an axis to filter.")
        top = ranked[:4]
        out["slices"] = ("Slice plots of the most important parameters",
                         slices(study, top, metric),
                         f"{metric} against {', '.join(top)} (most important first).")
    else:
        reason = "needs at least two completed trials and importances"
        out["parallel"] = ("Parallel coordinates", None, reason)
        out["slices"] = ("Slice plots of the most important parameters", None, reason)
    return out


def _several_objectives(study: optuna.Study, data: dict[str, Any], trials: list[FrozenTrial]
                        ) -> dict[str, tuple[str, Any | None, str]]:
    """A multi-objective study's Pareto front (a scatter of every completed trial, the front
    highlighted, infeasible ones marked) and its hypervolume against trials and epochs."""
    from optuna import visualization as vis

    from tunecli.reports.hypervolume import hypervolume_curve, reference_point

    names = [o["metric"] for o in data["objectives"]]
    directions = [o["direction"] for o in data["objectives"]]
    out: dict[str, tuple[str, Any | None, str]] = {}
    if not data.get("front"):
        reason = "No feasible trial has completed yet."
        return {"pareto": ("Pareto front", None, reason), "hypervolume": ("Hypervolume", None,
                                                                          reason)}
    if len(names) in (2, 3):
        fig = vis.plot_pareto_front(study, target_names=names)
        if "params" in names[1:] or "flops" in names[1:]:
            axis = "xaxis" if names.index(next(n for n in names if n in ("params", "flops"))) \
                == 0 else "yaxis"
            if len(names) == 2:
                fig.update_layout({axis: {"type": "log"}})
        out["pareto"] = ("Pareto front", fig,
                         f"Every completed trial; the front ({len(data['front'])} trials) in "
                         "red, dominated trials blue, infeasible ones (breaking a constraint) "
                         "grey. Hover for the trial number and parameters.")
    else:
        out["pareto"] = ("Pareto front", None, f"{len(names)} objectives: see the front table.")
    reference = reference_point([trials], directions)
    if reference is not None:
        curve = hypervolume_curve(trials, directions, reference)
        out["hypervolume"] = ("Hypervolume", comparison({study.study_name: {
            "trials": curve["trials"], "epochs": curve["epochs"],
            "best": curve["hypervolume"]}}, "hypervolume").update_yaxes(
                title_text="hypervolume"),
            "The space the front dominates, up to the worst feasible value of each "
            "objective: it grows as the front improves (against trials and epochs).")
    return out


def _history(study: optuna.Study, metric: str, complete: list[FrozenTrial]) -> Any:
    """Optuna's history with whole trial numbers on the axis: with one trial plotly would
    stretch it from -0.75 to 1.75 with fractional ticks."""
    from optuna import visualization as vis

    fig = vis.plot_optimization_history(study, target_name=metric,
                                        target=first_objective(study))
    numbers = [t.number for t in complete]
    if max(numbers) - min(numbers) < 10:
        fig.update_xaxes(range=[min(numbers) - 0.5, max(numbers) + 0.5], dtick=1)
    return fig


def comparison(curves: dict[str, dict[str, list[float]]], metric: str) -> Any:
    """Best-so-far of each study against trials finished and against epochs trained."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("against trials finished",
                                                        "against epochs trained"))
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    dashes = ["solid", "dash", "dot", "dashdot", "longdash", "longdashdot"]
    for i, (name, curve) in enumerate(curves.items()):
        # Studies that share their first trials draw the same steps: each later line is
        # thinner and dashed, so it shows inside the one beneath instead of hiding it.
        line = {"shape": "hv", "color": palette[i % len(palette)],
                "dash": dashes[i % len(dashes)], "width": max(1.5, 5 - 1.2 * i)}
        fig.add_trace(go.Scatter(x=curve["trials"], y=curve["best"], mode="lines",
                                 line=line, name=name, legendgroup=name), row=1, col=1)
        fig.add_trace(go.Scatter(x=curve["epochs"], y=curve["best"], mode="lines",
                                 line=line, name=name, legendgroup=name, showlegend=False),
                      row=1, col=2)
    fig.update_xaxes(title_text="trials finished", row=1, col=1)
    fig.update_xaxes(title_text="epochs trained", row=1, col=2)
    fig.update_yaxes(title_text=f"best {metric}", row=1, col=1)
    fig.update_layout(template="plotly_white")
    return fig
