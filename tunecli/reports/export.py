"""The best configuration as a study file that runs again anywhere (``report --export``)."""

from __future__ import annotations

from typing import Any

from tunecli.reports.summary import format_value
from tunecli.spec.models import StudySpec
from tunecli.spec.yamlio import dump_yaml

__all__ = ["best_study_yaml"]


def best_study_yaml(spec: StudySpec, data: dict[str, Any]) -> str:
    """A study file whose space is fixed to the best configuration, ready to run again."""
    best = data["best"]
    stored = spec.portable()  # runs from any folder, wherever the export is written
    stored["name"] = f"{spec.name}-best"
    stored["space"] = {key: {"value": value} for key, value in best["params"].items()}
    stored["budget"] = {**stored.get("budget", {}), "n_trials": 1, "timeout": None}
    stored["sampler"] = {"type": "random", "seed": spec.sampler.seed}
    stored["pruner"] = {"type": "none"}
    if best.get("best_epoch") and not stored["trainer"].get("final_epochs"):
        stored["trainer"]["final_epochs"] = best["best_epoch"]  # what `tunecli train` uses
    stored["exported_from"] = {"study": spec.name, "trial": best["number"],
                               "metric": data["metric"], "value": best["value"]}
    if stored["trainer"].get("data_root") is None:
        stored["trainer"].pop("data_root", None)
    header = (f"# Best configuration of study '{spec.name}' (trial #{best['number']}, "
              f"{data['metric']} = {format_value(best['value'])}).\n"
              f"# Train the final model: tunecli train THIS_FILE   (run again: tunecli search)\n")
    return header + dump_yaml(stored)
