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

__all__ = ["study_figures", "learning_curves", "comparison"]

_COLOURS = {"complete": "rgba(31,119,180,0.45)", "pruned": "rgba(214,39,40,0.45)",
            "fail": "rgba(127,127,127,0.6)", "best": "rgb(44,160,44)"}


def learning_curves(trials: list[FrozenTrial], metric: str, best: int | None) -> Any:
    """Every trial's metric by epoch; pruned trials end in an x where the pruner stopped them."""
    import plotly.graph_objects as go

    fig = go.Figure()
    shown: set[str] = set()
    for t in sorted(trials, key=lambda t: t.number == best):  # the best is drawn on top
        steps = sorted(t.intermediate_values)
        if not steps:
            continue
        values = [t.intermediate_values[s] for s in steps]
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
    return fig


def study_figures(study: optuna.Study, data: dict[str, Any], trials: list[FrozenTrial]
                  ) -> dict[str, tuple[str, Any | None, str]]:
    """Section id -> (title, figure or None, note). A None figure carries the reason."""
    from optuna import visualization as vis

    from tunecli.reports.summary import importance_evaluator

    metric = data["metric"]
    best = data["best"]["number"] if data["best"] else None
    imp = data["importances"] or {"values": {}, "note": "not computed", "method": "-"}
    ranked = list(imp["values"])
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    out: dict[str, tuple[str, Any | None, str]] = {}
    # Optuna warns (experimental features, few trials); the report says what it skipped.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["history"] = ("Optimization history",
                          vis.plot_optimization_history(study, target_name=metric),
                          "Each completed trial's value and the best so far.") if complete \
            else ("Optimization history", None, "No trial has completed yet.")
        out["curves"] = ("Learning curves", learning_curves(trials, metric, best),
                         "Pruned trials stop early; the x marks the epoch the pruner stopped.")
        if ranked:
            evaluator = importance_evaluator(imp["method"])
            out["importances"] = (
                "Parameter importances",
                vis.plot_param_importances(study, evaluator=evaluator, params=sorted(ranked),
                                           target_name=metric),
                f"{imp['method']} over {imp['n_trials']} completed trials"
                + (f" ({imp['note']})." if imp["note"] else ".")
                + (f" Not weighed (conditional): {', '.join(imp['left_out'])}."
                   if imp["left_out"] else ""))
        else:
            out["importances"] = ("Parameter importances", None, imp["note"] or "")
        if len(complete) >= 2 and ranked:
            out["parallel"] = ("Parallel coordinates",
                               vis.plot_parallel_coordinate(study, params=ranked[:8],
                                                            target_name=metric),
                               "Completed trials, one line each; drag along an axis to filter.")
            top = ranked[:4]
            out["slices"] = ("Slice plots of the most important parameters",
                             vis.plot_slice(study, params=top, target_name=metric),
                             f"{metric} against {', '.join(top)}.")
        else:
            reason = "needs at least two completed trials and importances"
            out["parallel"] = ("Parallel coordinates", None, reason)
            out["slices"] = ("Slice plots of the most important parameters", None, reason)
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


def comparison(curves: dict[str, dict[str, list[float]]], metric: str) -> Any:
    """Best-so-far of each study against trials finished and against epochs trained."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("against trials finished",
                                                        "against epochs trained"))
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    for i, (name, curve) in enumerate(curves.items()):
        colour = palette[i % len(palette)]
        fig.add_trace(go.Scatter(x=curve["trials"], y=curve["best"], mode="lines",
                                 line={"shape": "hv", "color": colour}, name=name,
                                 legendgroup=name), row=1, col=1)
        fig.add_trace(go.Scatter(x=curve["epochs"], y=curve["best"], mode="lines",
                                 line={"shape": "hv", "color": colour}, name=name,
                                 legendgroup=name, showlegend=False), row=1, col=2)
    fig.update_xaxes(title_text="trials finished", row=1, col=1)
    fig.update_xaxes(title_text="epochs trained", row=1, col=2)
    fig.update_yaxes(title_text=f"best {metric}", row=1, col=1)
    fig.update_layout(template="plotly_white")
    return fig
