"""The ``tunecli`` command: thin commands that parse, call one function, and map errors to exits.

Exit codes: 0 done, 1 the study failed, 2 bad input, 130 interrupted (resume continues it).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tunecli import __version__
from tunecli.errors import EXIT_INTERRUPTED, SpecError, TunecliError

app = typer.Typer(
    name="tunecli",
    help="Hyperparameter search for PyTorch models from a YAML study, driven by Optuna.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)
_state = {"debug": False}

T = TypeVar("T")

StorageOption = Annotated[str | None, typer.Option(
    "--storage", help="Optuna storage URL, or a .db/.journal path \\[env: TUNECLI_STORAGE; "
                      "default: sqlite:///tunecli.db]", show_default=False)]
DataRootOption = Annotated[str | None, typer.Option(
    "--data-root", help="Folder of torchvision data sets \\[env: TUNECLI_DATA]",
    show_default=False)]
KeepOption = Annotated[str, typer.Option(
    "--keep-checkpoints", help="Checkpoints of finished trials to keep: none, best or all")]
WorkersOption = Annotated[int | None, typer.Option(
    "--workers", help="Worker processes sharing the study on this machine", min=1)]
DevicesOption = Annotated[str | None, typer.Option(
    "--devices", help="GPUs for the workers, e.g. 0,1 (CUDA_VISIBLE_DEVICES per worker)")]
TrialsPerDeviceOption = Annotated[int, typer.Option(
    "--trials-per-device", help="Concurrent trials (workers) per GPU", min=1)]
TensorBoardOption = Annotated[Path | None, typer.Option(
    "--tensorboard", help="Log each trial as a TensorBoard run under DIR/STUDY (needs the "
                          "tensorboard package)", show_default=False)]


def _version(value: bool) -> None:
    if value:
        console.print(f"tunecli {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[bool | None, typer.Option("--version", callback=_version,
                                                    is_eager=True,
                                                    help="Show the version and exit.")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")] = False,
) -> None:
    """Search hyperparameters of PyTorch models. Start with: tunecli search studies/digits.yaml"""
    _state["debug"] = debug


def _guard(action: Callable[[], T]) -> T:
    """Run a command body: tunecli errors become one line and an exit code, not a traceback."""
    try:
        return action()
    except TunecliError as exc:
        if _state["debug"]:  # the traceback too, but the same exit code
            import traceback

            traceback.print_exc()
        from tunecli.storage import mask

        kind = "error" if isinstance(exc, SpecError) else "study failed"
        lines = exc.lines() if isinstance(exc, SpecError) else [str(exc)]
        for line in lines:
            err_console.print(f"[red]{kind}:[/] {escape(mask(line))}", soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        if _state["debug"]:
            raise
        err_console.print("interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _check_keep(keep: str) -> str:
    if keep not in ("none", "best", "all"):
        raise SpecError(f"'{keep}' is not one of none, best, all", source="--keep-checkpoints",
                        fix="Write --keep-checkpoints best.")
    return keep


def _output_file(path: Path | None, option: str, example: str) -> Path | None:
    """A file a command will write: missing parent folders are created; a folder, or a parent
    that cannot be made, is bad input said before any work is done."""
    if path is None:
        return None
    if path.is_dir():
        raise SpecError(f"{path} is a folder", source=option,
                        fix=f"Give a file name, e.g. {option} {path / example}.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SpecError(f"cannot create the folder {path.parent} ({exc.strerror})",
                        source=option, fix="Give a path in a folder you can write to.") from None
    return path


def _check_tensorboard(folder: Path | None) -> None:
    if folder is not None:
        from tunecli.tracking import check_available

        check_available()


def _storage_option(url: str) -> str:
    """The --storage a printed command needs: none for the default, else the URL with a file's
    path made absolute, so the command also runs from another folder."""
    from tunecli.storage import DEFAULT_URL, describe

    return "" if url == DEFAULT_URL else f" --storage '{describe(url)}'"


def _commands(name: str, url: str) -> str:
    storage = _storage_option(url)
    return (f"  report: tunecli report {name}{storage} --html {name}-report.html\n"
            f"  train:  tunecli train {name}{storage}\n"
            f"  resume: tunecli resume {name}{storage}")


def _interrupted(spec: Any, url: str) -> NoReturn:
    err_console.print("[yellow]Interrupted.[/] Finished trials are stored; the running "
                      "trial will be retried from its last checkpoint.\n"
                      + _commands(spec.name, url), highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_INTERRUPTED)


def _summary(study: Any, spec: Any, url: str, stopped: str | None = None) -> None:
    """What a finished search prints: the report, why it stopped, what to run next."""
    from tunecli import report

    console.print()
    report.show(console, report.summary(study, spec), top=5)
    if stopped:
        console.print(f"Stopped: {stopped}.")
    console.print(_commands(spec.name, url), highlight=False, soft_wrap=True)


_STOP_REASONS = {"budget": "budget reached", "timeout": "timeout reached",
                 "grid": "every grid point was tried",
                 "elsewhere": "the last trials are running in other workers"}


def _run_and_finish(study: Any, spec: Any, url: str, data_root: str | None, keep: str,
                    tensorboard: Path | None) -> None:
    from tunecli import study as study_module
    from tunecli.storage import mask

    console.print(f"study [bold]{spec.name}[/] in {escape(mask(url))}: {spec.direction} "
                  f"{spec.metric}, sampler {spec.sampler.type}, pruner {spec.pruner.type}, "
                  f"budget {spec.budget.n_trials or '-'} trials"
                  + (f" / {spec.budget.timeout:g}s" if spec.budget.timeout else ""))
    try:
        outcome = study_module.run(study, spec, url, console, data_root=data_root,
                                   keep_checkpoints=keep, tensorboard=tensorboard)
    except KeyboardInterrupt:
        _interrupted(spec, url)
    if outcome.stopped_by == "interrupted":
        _interrupted(spec, url)
    _summary(study, spec, url, _STOP_REASONS.get(outcome.stopped_by, outcome.stopped_by))


@app.command()
def search(
    study_file: Annotated[Path, typer.Argument(help="The study YAML file", show_default=False)],
    storage: StorageOption = None,
    n_trials: Annotated[int | None, typer.Option(
        "--n-trials", help="Finished trials to reach (overrides budget.n_trials)")] = None,
    timeout: Annotated[str | None, typer.Option(
        "--timeout", help="Wall time for this run, e.g. 10m (overrides budget.timeout)")] = None,
    name: Annotated[str | None, typer.Option(
        "--name", help="Study name (overrides name:)")] = None,
    seed: Annotated[int | None, typer.Option(
        "--seed", help="Sampler seed (overrides sampler.seed)")] = None,
    data_root: DataRootOption = None,
    fork: Annotated[bool, typer.Option(
        "--fork", help="If the name exists with a different spec, run as NAME-2, NAME-3, ...")]
        = False,
    keep_checkpoints: KeepOption = "best",
    workers: WorkersOption = None,
    devices: DevicesOption = None,
    trials_per_device: TrialsPerDeviceOption = 1,
    tensorboard: TensorBoardOption = None,
    assignments: Annotated[list[str] | None, typer.Option(
        "--set", help="Override any key of the file: --set pruner.type=none (YAML value; "
                      "repeatable)", show_default=False)] = None,
) -> None:
    """Run a study: sample, train, prune, until the budget is met."""
    def body() -> None:
        from tunecli import checks
        from tunecli import spec as spec_module
        from tunecli import study as study_module
        from tunecli.storage import resolve_url

        keep = _check_keep(keep_checkpoints)
        _check_tensorboard(tensorboard)
        overrides = {**spec_module.parse_assignments(assignments or []),
                     **_given({"budget.n_trials": n_trials, "budget.timeout": timeout,
                               "name": name, "sampler.seed": seed})}
        spec = spec_module.load(study_file, overrides)
        url = resolve_url(storage, spec.storage)
        checks.preflight(spec, data_root, str(study_file))
        for warning in checks.warnings(spec):
            err_console.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)
        spec = study_module.with_resolved_data_root(spec, data_root)
        if fork:
            spec = _forked(spec, url, str(study_file))
        study = study_module.open_for_search(spec, url, str(study_file))
        if workers not in (None, 1) or devices:
            _run_workers(study, spec, url, workers, devices, trials_per_device, data_root, keep,
                         tensorboard)
        else:
            _run_and_finish(study, spec, url, data_root, keep, tensorboard)
    _guard(body)


def _given(options: dict[str, Any]) -> dict[str, Any]:
    """Overrides from the options the user gave; one not given changes nothing (not even a
    --set of the same key)."""
    return {key: value for key, value in options.items() if value is not None}


def _run_workers(study: Any, spec: Any, url: str, workers: int | None, devices: str | None,
                 per_device: int, data_root: str | None, keep: str,
                 tensorboard: Path | None) -> None:
    from tunecli import study as study_module
    from tunecli import workers as workers_module
    from tunecli.storage import mask

    envs = workers_module.plan(workers, devices, per_device)
    console.print(f"study [bold]{spec.name}[/] in {escape(mask(url))}: {len(envs)} workers, "
                  f"budget {spec.budget.n_trials or '-'} trials")
    extra = ["--keep-checkpoints", keep] + (["--data-root", data_root] if data_root else [])
    if tensorboard is not None:
        extra += ["--tensorboard", str(tensorboard.resolve())]
    if spec.budget.timeout:
        extra += ["--timeout", f"{spec.budget.timeout}s"]
    codes = workers_module.run_workers(spec.name, url, envs, extra)
    if EXIT_INTERRUPTED in codes:
        _interrupted(spec, url)
    study_module.reap_lost_trials(study)  # a killed worker's trial: failed, queued for resume
    _summary(study, spec, url)
    import optuna

    grid_done = isinstance(study.sampler, optuna.samplers.GridSampler) and \
        study.sampler.is_exhausted(study)
    problem, failed = workers_module.problem(
        codes, study_module.count_trials(study.get_trials()), spec.budget.n_trials,
        spec.budget.timeout is not None or grid_done)
    if failed:
        err_console.print(f"[red]study incomplete:[/] {problem}. Continue it with: tunecli "
                          f"resume {spec.name}" + _storage_option(url), soft_wrap=True)
        raise typer.Exit(2 if 2 in codes else 1)
    if problem:
        err_console.print(f"[yellow]warning:[/] {problem}; the other workers retried its "
                          "trial and met the budget.", soft_wrap=True)


def _forked(spec: Any, url: str, source: str) -> Any:
    """The first free NAME-k whose stored spec matches, or a new one."""
    from tunecli import spec as spec_module
    from tunecli import study as study_module
    from tunecli.storage import open_storage

    names = set(study_module.study_names(open_storage(url, heartbeat=False)))
    candidate, k = spec.name, 1
    while candidate in names:
        import optuna

        stored = optuna.load_study(study_name=candidate, storage=url).user_attrs.get(
            study_module.SPEC_ATTR)
        if stored and not spec_module.objective_diff(stored, spec.stored()):
            break
        k += 1
        candidate = f"{spec.name}-{k}"
    if candidate != spec.name:
        console.print(f"The spec differs from the stored study '{spec.name}': running it as "
                      f"'{candidate}'.")
    return spec.model_copy(update={"name": candidate})


def _run_as_worker(study: Any, spec: Any, url: str, data_root: str | None, keep: str,
                   tensorboard: Path | None) -> None:
    """One of several workers: trial lines only; the parent prints the summary."""
    import torch

    from tunecli import study as study_module

    threads = os.environ.get("TUNECLI_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    plain = Console(highlight=False, force_terminal=False)
    outcome = study_module.run(study, spec, url, plain, data_root=data_root,
                               keep_checkpoints=keep, tensorboard=tensorboard)
    if outcome.stopped_by == "interrupted":
        raise typer.Exit(EXIT_INTERRUPTED)


@app.command()
def resume(
    name: Annotated[str, typer.Argument(help="Study name", show_default=False)],
    storage: StorageOption = None,
    n_trials: Annotated[int | None, typer.Option(
        "--n-trials", help="Raise the budget of finished trials")] = None,
    timeout: Annotated[str | None, typer.Option(
        "--timeout", help="Wall time for this run, e.g. 10m")] = None,
    data_root: DataRootOption = None,
    keep_checkpoints: KeepOption = "best",
    tensorboard: TensorBoardOption = None,
    workers: WorkersOption = None,
    devices: DevicesOption = None,
    trials_per_device: TrialsPerDeviceOption = 1,
    worker: Annotated[bool, typer.Option("--worker", hidden=True,
                                         help="Run as one of search --workers")] = False,
) -> None:
    """Continue a stopped or crashed study to its budget (lost trials are retried)."""
    def body() -> None:
        from tunecli import checks
        from tunecli import study as study_module
        from tunecli.storage import resolve_url

        keep = _check_keep(keep_checkpoints)
        _check_tensorboard(tensorboard)
        url = resolve_url(storage)
        overrides = _given({"budget.n_trials": n_trials, "budget.timeout": timeout})
        study, spec = study_module.load(name, url, overrides=overrides)
        if "budget.n_trials" in overrides:  # the new budget is the study's from now on
            stored = study.user_attrs[study_module.SPEC_ATTR]
            stored["budget"] = {**stored["budget"], "n_trials": spec.budget.n_trials}
            study.set_user_attr(study_module.SPEC_ATTR, stored)
        checks.preflight(spec, data_root, f"study '{name}'")
        if worker:
            _run_as_worker(study, spec, url, data_root, keep, tensorboard)
        elif workers not in (None, 1) or devices:
            _run_workers(study, spec, url, workers, devices, trials_per_device, data_root, keep,
                         tensorboard)
        else:
            _run_and_finish(study, spec, url, data_root, keep, tensorboard)
    _guard(body)


@app.command()
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
        from tunecli import report as report_module
        from tunecli import study as study_module
        from tunecli.storage import resolve_url

        if format not in ("table", "json", "csv"):
            raise SpecError(f"'{format}' is not a report format", source="--format",
                            fix="Use table, json or csv.")
        if importance not in report_module.IMPORTANCE_METHODS:
            raise SpecError(f"'{importance}' is not an importance method", source="--importance",
                            fix="Use auto, ped-anova, fanova or mdi.")
        url = resolve_url(storage)
        if len(names) > 1:
            loaded = [study_module.load(n, url) for n in names]
            _output_file(html, "--html", "report.html")
            _compare(loaded)
            return
        study, spec = study_module.load(names[0], url)
        _output_file(export, "--export", "best.yaml")  # checked before the report's work
        _output_file(html, "--html", "report.html")
        data = report_module.summary(study, spec, importance=importance)
        if format == "json":
            sys.stdout.write(report_module.to_json(data) + "\n")
        elif format == "csv":
            sys.stdout.write(report_module.to_csv(data))
        else:
            report_module.show(console, data, top=top)
        if export is not None:
            if data["best"] is None:
                raise SpecError("no trial has completed, so there is no best configuration",
                                source="--export", fix="Run or resume the study first.")
            export.write_text(report_module.best_study_yaml(spec, data), encoding="utf-8")
            err_console.print(f"wrote {export}")
        if html is not None:
            from tunecli import html_report

            html_report.write(html, html_report.study_report(study, spec, data, top=top))
            err_console.print(f"wrote {html}")

    def _compare(studies: list[Any]) -> None:
        from tunecli import compare, html_report
        from tunecli import report as report_module

        if export is not None:
            raise SpecError("--export takes the best configuration of one study",
                            source="--export", fix="Name one study: tunecli report NAME "
                                                   "--export best.yaml.")
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
    _guard(body)


@app.command()
def train(
    source: Annotated[str, typer.Argument(
        help="best.yaml (from report --export) or a study name", show_default=False)],
    trial: Annotated[int | None, typer.Option(
        "--trial", help="With a study name: this trial instead of the best", show_default=False)]
        = None,
    storage: StorageOption = None,
    epochs: Annotated[int | None, typer.Option(
        "--epochs", help="Epochs to train \\[default: trainer.final_epochs, else the trial's "
                         "best epoch, else trainer.epochs]", min=1, show_default=False)] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Output path without suffix; writes OUT.pt and OUT.json "
                      "\\[default: models/NAME]", show_default=False)] = None,
    data_root: DataRootOption = None,
) -> None:
    """Train one configuration on training + validation data, test it once, save the model."""
    def body() -> None:
        from tunecli import final
        from tunecli.storage import resolve_url

        path = Path(source)
        if path.suffix.lower() in (".yaml", ".yml") or path.exists():
            if trial is not None:
                raise SpecError("--trial picks a trial of a stored study, not of a file",
                                source="--trial", fix=f"Run tunecli train STUDY_NAME --trial "
                                                      f"{trial}, or drop --trial.")
            choice = final.from_file(path, epochs)
        else:
            choice = final.from_study(source, resolve_url(storage), trial, epochs)
        target = out if out is not None else Path("models") / choice.label
        if target.is_dir() or not target.name:
            raise SpecError(f"{target} is a folder", source="--out",
                            fix=f"Give a path without suffix, e.g. --out {target / 'model'}.")
        _output_file(target.with_suffix(".json"), "--out", "model")
        console.print(f"training {choice.source} for {choice.epochs} epochs on training + "
                      "validation data", highlight=False)
        info = final.train(choice, target, lambda line: console.print(line, highlight=False),
                           data_root)
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
        console.print(f"saved {target.with_suffix('.pt')} (state dict) and "
                      f"{target.with_suffix('.json')}\n  load: from tunecli.final import "
                      f"load_model; model, info = load_model('{target.with_suffix('.json')}')",
                      highlight=False, soft_wrap=True)
    _guard(body)


@app.command()
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
    """Run every check search runs before its first trial (the file, the data, the model,
    the device) and print the search space; trains nothing, stores nothing."""
    def body() -> None:
        from tunecli import checks, space
        from tunecli import spec as spec_module

        spec = spec_module.load(study_file)
        loaded = None if no_data else checks.preflight(spec, data_root, str(study_file))
        for warning in checks.warnings(spec):
            err_console.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)
        table = Table(title=f"{study_file}: study '{spec.name}' is valid", title_justify="left")
        table.add_column("parameter")
        table.add_column("search")
        for key, param in spec.space.items():
            table.add_row(key, escape(space.describe(param)))
        console.print(table)
        console.print(f"{spec.direction} {spec.metric} on {spec.trainer.dataset.name} with "
                      f"{spec.trainer.model}, {spec.trainer.epochs} epochs; sampler "
                      f"{spec.sampler.type}, pruner {spec.pruner.type}; budget "
                      f"{spec.budget.n_trials} trials")
        if loaded is not None:
            console.print(f"data: {loaded['task']}, {loaded['train']} training / "
                          f"{loaded['validation']} validation / {loaded['test']} test examples "
                          f"of shape {loaded['input_shape']}, {loaded['outputs']} output(s); "
                          f"device {loaded['device']}; the model builds", highlight=False)
        if data and loaded is not None:
            for line in checks.describe_data(spec, data_root):
                console.print(f"  {line}", highlight=False, soft_wrap=True)
    _guard(body)


@app.command("list")
def list_studies(storage: StorageOption = None) -> None:
    """Studies in a storage, with their trial counts and best values."""
    def body() -> None:
        import optuna

        from tunecli import study as study_module
        from tunecli.storage import describe, local_file, open_storage, resolve_url

        url = resolve_url(storage)
        path = local_file(url)
        if path is not None and not path.is_file():  # never create a storage just to list it
            console.print(f"No studies: there is no storage at {escape(describe(url))}.",
                          soft_wrap=True)
            return
        study_module._quiet_optuna()
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
            counts = study_module.count_trials(study.get_trials(deepcopy=False))
            budget = (study.user_attrs.get(study_module.SPEC_ATTR) or {}).get("budget") or {}
            best = s.best_trial.value if s.best_trial is not None else None
            table.add_row(s.study_name, s.direction.name.lower(), str(counts["finished"]),
                          str(counts["failed"]), str(budget.get("n_trials") or "-"),
                          "-" if best is None else f"{best:.4g}",
                          s.datetime_start.strftime("%Y-%m-%d %H:%M") if s.datetime_start
                          else "-")
        console.print(table)
    _guard(body)


@app.command()
def schema() -> None:
    """Print the JSON Schema of study files (for editor validation)."""
    from tunecli.spec import json_schema

    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")


def main() -> None:
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")
    app()
