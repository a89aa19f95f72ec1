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
    FuseOption,
    NameOption,
    NTrialsOption,
    SeedOption,
    SetOption,
    StorageOption,
    TimeoutOption,
    console,
    err_console,
    file_overrides,
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
    assignments: SetOption = None,
    n_trials: NTrialsOption = None,
    timeout: TimeoutOption = None,
    name: NameOption = None,
    seed: SeedOption = None,
    fuse: FuseOption = None,
) -> None:
    """Run every check search makes before its first trial; train nothing, store nothing."""
    def body() -> None:
        from tunecli import spec as spec_module
        from tunecli.api import checking
        from tunecli.spec import checks

        spec = spec_module.load(study_file, *file_overrides(
            assignments, n_trials=n_trials, timeout=timeout, name=name, seed=seed, fuse=fuse))
        loaded = checking.check(spec, data_root, str(study_file), data=not no_data)
        for warning in checks.warnings(spec):
            err_console.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)
        table = Table(title=f"{study_file}: study '{spec.name}' is valid", title_justify="left")
        table.add_column("parameter")
        table.add_column("search")
        for key, searched in checking.space_rows(spec):
            table.add_row(key, escape(searched))
        console.print(table)
        trained = (f"on {spec.trainer.dataset.name} with {spec.trainer.model}"
                   if spec.trainer.kind == "builtin" else
                   f"trained by {spec.trainer.function or spec.trainer.command}")
        console.print(f"{escape(spec.describe_aims())} {escape(trained)}, {spec.trainer.epochs} "
                      f"epochs; sampler {spec.sampler.type}, pruner {spec.pruner.type}; budget "
                      f"{spec.budget.describe()}")
        if loaded is not None and "trainer" in loaded:
            console.print("your function imports and takes (params, trial)"
                          if spec.trainer.function else "the command's program is found",
                          highlight=False)
            loaded = None  # your code reads its own data
        if loaded is not None:
            console.print(f"data: {loaded['task']}, {loaded['train']} training / "
                          f"{loaded['validation']} validation / {loaded['test']} test examples "
                          f"of shape {loaded['input_shape']}, {loaded['outputs']} output(s); "
                          f"device {loaded['device']}; the model builds", highlight=False)
        if data and loaded is not None:
            for line in checking.describe_data(spec, data_root):
                console.print(f"  {line}", highlight=False, soft_wrap=True)
    guard(body)


def list_studies(storage: StorageOption = None) -> None:
    """Studies in a storage, with their trial counts and best values."""
    def body() -> None:
        from tunecli import api

        where, rows = api.list_studies(storage)
        if not rows:
            console.print(f"No studies: there is no storage at {escape(where)}." if rows is None
                          else f"No studies in {escape(where)}.", soft_wrap=True)
            return
        columns = _fitting(rows, console.width)
        table = Table(title=f"Studies in {escape(where)}", title_justify="left", box=None,
                      padding=(0, 2, 0, 0))
        for column in columns:
            table.add_column(column, no_wrap=True)
        for row in rows:
            table.add_row(*(row[column] for column in columns))
        console.print(table)
    guard(body)


_DROPPED_FIRST = ("started", "budget", "failed", "direction")  # on a narrow terminal


def _fitting(rows: list[dict[str, str]], width: int) -> list[str]:
    """The columns that fit ``width`` whole: the least needed go first; a name, a metric or a
    number is never cut."""
    columns = list(rows[0])

    def needed() -> int:
        return sum(max(len(c), *(len(r[c]) for r in rows)) + 2 for c in columns)

    for column in _DROPPED_FIRST:
        if needed() <= width:
            break
        columns.remove(column)
    return columns


def schema() -> None:
    """Print the JSON Schema of study files (for editor validation)."""
    from tunecli.spec import json_schema

    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")
