"""``report`` and ``train``: read a stored study; show, export and compare; train its best."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from tunecli.cli.app import (
    DataRootOption,
    StorageOption,
    console,
    err_console,
    guard,
    output_file,
)
from tunecli.errors import SpecError


def report(
    names: Annotated[list[str], typer.Argument(
        help="Study name; two or more names compare the studies", show_default=False)],
    storage: StorageOption = None,
    format: Annotated[str, typer.Option(
        "--format", help="table, json or csv (all trials; with several studies: the curves)")]
        = "table",
    top: Annotated[int, typer.Option("--top", help="Trials in the top table", min=1)] = 10,
    export: Annotated[Path | None, typer.Option(
        "--export", help="Write a study file fixed to the best configuration",
        show_default=False)] = None,
    html: Annotated[Path | None, typer.Option(
        "--html", help="Write a self-contained HTML report with figures (opens offline)",
        show_default=False)] = None,
    importance: Annotated[str, typer.Option(
        "--importance", help="Parameter importances: auto (PED-ANOVA from 41 completed "
                             "trials, fANOVA below), ped-anova, fanova or mdi")] = "auto",
) -> None:
    """Show the best configuration, importances, the top trials; export them; compare studies."""
    def body() -> None:
        from tunecli.api import stores
        from tunecli.reports import summary as report_module

        if format not in ("table", "json", "csv"):
            raise SpecError(f"'{format}' is not a report format", source="--format",
                            fix="Use table, json or csv.")
        if importance not in report_module.IMPORTANCE_METHODS:
            raise SpecError(f"'{importance}' is not an importance method", source="--importance",
                            fix="Use auto, ped-anova, fanova or mdi.")
        url = stores.resolve_url(storage)
        if len(names) > 1:
            if export is not None:
                raise SpecError("--export takes the best configuration of one study",
                                source="--export", fix="Name one study: tunecli report NAME "
                                                       "--export best.yaml.")
            loaded = [stores.load(n, url) for n in names]
            _compare(loaded, format, output_file(html, "--html", "report.html"))
            return
        study, spec = stores.load(names[0], url)
        _report_one(study, spec, format, top, importance,  # paths checked before the work
                    output_file(export, "--export", "best.yaml"),
                    output_file(html, "--html", "report.html"))
    guard(body)


def _report_one(study: Any, spec: Any, format: str, top: int, importance: str,
                export: Path | None, html: Path | None) -> None:
    from tunecli.reports import summary as report_module
    from tunecli.reports import terminal
    from tunecli.reports.export import best_study_yaml

    data = report_module.summary(study, spec, importance=importance)
    if format == "json":
        sys.stdout.write(report_module.to_json(data) + "\n")
    elif format == "csv":
        sys.stdout.write(report_module.to_csv(data))
    else:
        terminal.show(console, data, top=top)
    if export is not None:
        if data["best"] is None:
            raise SpecError("no trial has completed, so there is no best configuration",
                            source="--export", fix="Run or resume the study first.")
        export.write_text(best_study_yaml(spec, data), encoding="utf-8")
        err_console.print(f"wrote {export}")
    if html is not None:
        from tunecli.reports import html as html_report

        html_report.write(html, html_report.study_report(study, spec, data, top=top))
        err_console.print(f"wrote {html}")


def _compare(studies: list[Any], format: str, html: Path | None) -> None:
    from tunecli.reports import compare
    from tunecli.reports import html as html_report
    from tunecli.reports import summary as report_module

    data = compare.comparison(studies)
    if format == "json":
        sys.stdout.write(report_module.to_json(data) + "\n")
    elif format == "csv":
        sys.stdout.write(compare.to_csv(data))
    else:
        compare.show(console, data)
    if html is not None:
        html_report.write(html, html_report.comparison_report(data))
        err_console.print(f"wrote {html}")


def train(
    source: Annotated[str, typer.Argument(
        help="best.yaml (from report --export) or a study name", show_default=False)],
    trial: Annotated[int | None, typer.Option(
        "--trial", help="With a study name: this trial instead of the best", show_default=False)]
        = None,
    pick: Annotated[str | None, typer.Option(
        "--pick", help="With a multi-objective study: a trial of the Pareto front, 'best', "
                       "'smallest-within D' (the smallest model within D of the best first "
                       "objective) or 'fastest-within D'", show_default=False)] = None,
    storage: StorageOption = None,
    epochs: Annotated[int | None, typer.Option(
        "--epochs", help="Epochs to train \\[default: trainer.final_epochs, else the trial's "
                         "best epoch, else trainer.epochs]", min=1, show_default=False)] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Output path without suffix; writes OUT.pt and OUT.json "
                      "\\[default: models/NAME, models/NAME-trialN for --trial or --pick]",
        show_default=False)] = None,
    export: Annotated[list[str] | None, typer.Option(
        "--export", help="Also write the model with its input pipeline for serving: onnx "
                         "(OUT.onnx, for onnxruntime) or torchscript (OUT.torchscript.pt, for "
                         "torch alone); repeatable", show_default=False)] = None,
    data_root: DataRootOption = None,
) -> None:
    """Train one configuration on training + validation data, test it once, save the model."""
    def body() -> None:
        from tunecli import api
        from tunecli.api.models import check_exports, train_choice

        exports = check_exports(export or [])
        choice = api.choose_for_training(source, storage=storage, trial=trial, pick=pick,
                                         epochs=epochs)
        target = out if out is not None else Path("models") / choice.label
        if target.is_dir() or not target.name:
            raise SpecError(f"{target} is a folder", source="--out",
                            fix=f"Give a path without suffix, e.g. --out {target / 'model'}.")
        output_file(target.with_suffix(".json"), "--out", "model")
        if choice.why:
            console.print(f"picked: {escape(choice.why)}", highlight=False, soft_wrap=True)
        console.print(f"training {choice.source} for {choice.epochs} epochs on training + "
                      "validation data", highlight=False)
        info = train_choice(choice, target, lambda line: console.print(line, highlight=False),
                           data_root, exports)
        console.print("[bold]Test metrics[/] (held-out test part, evaluated once)")
        table = Table(box=None, padding=(0, 2, 0, 2))
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key, value in info["test_metrics"].items():
            table.add_row(key, f"{value:.4f}")
        console.print(table)
        if info["search_value"] is not None:
            console.print(f"(the search's {info['search_metric']} of this configuration: "
                          f"{info['search_value']:.4f})", highlight=False)
        _say_saved(target, info)
    guard(body)


def _say_saved(target: Path, info: dict[str, Any]) -> None:
    model_file = target.with_suffix(".json")
    console.print(f"saved {target.with_suffix('.pt')} (state dict) and {model_file} (its "
                  "configuration and input pipeline)", highlight=False, soft_wrap=True)
    for kind, name in (info.get("exports") or {}).items():
        console.print(f"exported {target.with_name(name)} ({kind}, input pipeline inside)",
                      highlight=False, soft_wrap=True)
    console.print(f"  predict: tunecli predict {model_file} INPUT\n"
                  f"  python:  from tunecli.api import load_model; "
                  f"model = load_model('{model_file}')", highlight=False, soft_wrap=True)
