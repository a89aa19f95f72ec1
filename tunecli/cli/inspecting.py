"""``validate``, ``list`` and ``schema``: look at study files and storages; run nothing."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from tunecli.cli.app import (
    DataRootOption,
    StorageOption,
    console,
    err_console,
    guard,
)


def validate(
    study_file: Annotated[Path, typer.Argument(help="The study YAML file", show_default=False)],
    data_root: DataRootOption = None,
    no_data: Annotated[bool, typer.Option(
        "--no-data", help="Check the file only: skip loading the data and building the model")]
        = False,
    data: Annotated[bool, typer.Option(
        "--data", help="Also describe the data: rows, features, classes and their balance, "
                       "missing cells")] = False,
) -> None:
    """Run every check search makes before its first trial; train nothing, store nothing."""
    def body() -> None:
        from tunecli import spec as spec_module
        from tunecli.engine import preflight, space
        from tunecli.spec import checks

        spec = spec_module.load(study_file)
        if no_data:
            preflight.check_engine(spec, str(study_file))
        loaded = None if no_data else preflight.preflight(spec, data_root, str(study_file))
        for warning in checks.warnings(spec):
            err_console.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)
        table = Table(title=f"{study_file}: study '{spec.name}' is valid", title_justify="left")
        table.add_column("parameter")
        table.add_column("search")
        for key, param in spec.space.items():
            table.add_row(key, escape(space.describe(param)))
        console.print(table)
        console.print(f"{escape(spec.describe_aims())} on {spec.trainer.dataset.name} with "
                      f"{spec.trainer.model}, {spec.trainer.epochs} epochs; sampler "
                      f"{spec.sampler.type}, pruner {spec.pruner.type}; budget "
                      f"{spec.budget.describe()}")
        if loaded is not None:
            console.print(f"data: {loaded['task']}, {loaded['train']} training / "
                          f"{loaded['validation']} validation / {loaded['test']} test examples "
                          f"of shape {loaded['input_shape']}, {loaded['outputs']} output(s); "
                          f"device {loaded['device']}; the model builds", highlight=False)
        if data and loaded is not None:
            for line in preflight.describe_data(spec, data_root):
                console.print(f"  {line}", highlight=False, soft_wrap=True)
    guard(body)


def list_studies(storage: StorageOption = None) -> None:
    """Studies in a storage, with their trial counts and best values."""
    def body() -> None:
        import optuna

        from tunecli.engine import study as study_module
        from tunecli.engine.recovery import count_trials
        from tunecli.engine.storage import describe, local_file, open_storage, resolve_url

        url = resolve_url(storage)
        path = local_file(url)
        if path is not None and not path.is_file():  # never create a storage just to list it
            console.print(f"No studies: there is no storage at {escape(describe(url))}.",
                          soft_wrap=True)
            return
        study_module.quiet_optuna()
        opened = open_storage(url, heartbeat=False, create=False)
        summaries = optuna.get_all_study_summaries(opened, include_best_trial=True)
        if not summaries:
            console.print(f"No studies in {escape(describe(url))}.", soft_wrap=True)
            return
        table = Table(title=f"Studies in {escape(describe(url))}", title_justify="left")
        for column in ("name", "direction", "finished", "failed", "budget", "best value",
                       "started"):
            table.add_column(column)
        for s in summaries:
            study = optuna.load_study(study_name=s.study_name, storage=opened)
            counts = count_trials(study.get_trials(deepcopy=False))
            budget = (study_module.stored_spec(study) or {}).get("budget") or {}
            limit = (str(budget["n_trials"]) if budget.get("n_trials")
                     else f"{budget['epochs']} epochs" if budget.get("epochs") else "-")
            directions = ("/".join(d.name.lower()[:3] for d in s.directions)
                          if len(s.directions) > 1 else s.directions[0].name.lower())
            if len(s.directions) > 1:  # several objectives: the front's size, not one value
                front = len(study.best_trials)
                best_text = f"front of {front}" if front else "-"
            else:
                best = s.best_trial.value if s.best_trial is not None else None
                best_text = "-" if best is None else f"{best:.4g}"
            table.add_row(s.study_name, directions, str(counts["finished"]),
                          str(counts["failed"]), limit, best_text,
                          s.datetime_start.strftime("%Y-%m-%d %H:%M") if s.datetime_start
                          else "-")
        console.print(table)
    guard(body)


def schema() -> None:
    """Print the JSON Schema of study files (for editor validation)."""
    from tunecli.spec import json_schema

    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")
