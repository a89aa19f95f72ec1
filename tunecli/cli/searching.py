"""``search`` and ``resume``: run a study here, or as local worker processes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from tunecli.cli.app import (
    DataRootOption,
    DevicesOption,
    FuseOption,
    KeepOption,
    NameOption,
    NTrialsOption,
    SeedOption,
    SetOption,
    StorageOption,
    TensorBoardOption,
    TimeoutOption,
    TrialsPerDeviceOption,
    WandbOption,
    WorkersOption,
    check_keep,
    console,
    err_console,
    file_overrides,
    guard,
    interrupted,
    storage_option,
    summary,
)
from tunecli.errors import EXIT_INTERRUPTED

if TYPE_CHECKING:
    from tunecli.api.running import Tracking

_STOP_REASONS = {"budget": "the budget is met", "grid": "every grid point was tried",
                 "elsewhere": "the last trials are running in other workers"}


def _why_stopped(stopped_by: str, spec: Any, cut: int) -> tuple[str, bool]:
    """Why the run stopped, in words, and whether ``resume`` would continue anything
    (``cut``: trials the time limit stopped, to be continued)."""
    if stopped_by != "timeout":
        return _STOP_REASONS.get(stopped_by, stopped_by), False
    text = f"the time limit ({spec.budget.timeout:g}s) was reached"
    if cut:
        text += (f"; {cut} running trial{'s were' if cut > 1 else ' was'} stopped after "
                 "its last stored epoch, and tunecli resume continues "
                 f"{'them' if cut > 1 else 'it'} from there (--timeout sets a new limit)")
    return text, True


def _run_and_finish(opened: Any, data_root: str | None, keep: str, tracking: Tracking) -> None:
    from tunecli import api
    from tunecli.api.stores import mask

    study, spec, url = opened.study, opened.spec, opened.url
    console.print(f"study [bold]{spec.name}[/] in {escape(mask(url))}: "
                  f"{escape(spec.describe_aims())}, sampler {spec.sampler.type}, "
                  f"pruner {spec.pruner.type}, "
                  f"budget {spec.budget.describe()}")
    try:
        outcome = api.run_here(opened, console, data_root=data_root,
                               keep_checkpoints=keep, tracking=tracking)
    except KeyboardInterrupt:
        interrupted(spec, url)
    if outcome.stopped_by == "interrupted":
        interrupted(spec, url)
    stopped, resume_continues = _why_stopped(outcome.stopped_by, spec,
                                             outcome.extra.get("cut", 0))
    summary(study, spec, url, stopped, resume=resume_continues)


def search(
    study_file: Annotated[Path, typer.Argument(help="The study YAML file", show_default=False)],
    storage: StorageOption = None,
    n_trials: NTrialsOption = None,
    timeout: TimeoutOption = None,
    name: NameOption = None,
    seed: SeedOption = None,
    data_root: DataRootOption = None,
    fork: Annotated[bool, typer.Option(
        "--fork", help="If the name exists with a different spec, run as NAME-2, NAME-3, ...")]
        = False,
    keep_checkpoints: KeepOption = "best",
    workers: WorkersOption = None,
    devices: DevicesOption = None,
    trials_per_device: TrialsPerDeviceOption = 1,
    fuse: FuseOption = None,
    tensorboard: TensorBoardOption = None,
    wandb: WandbOption = None,
    enqueue: Annotated[Path | None, typer.Option(
        "--enqueue", help="A YAML file of configurations to try first (a mapping or a list)",
        show_default=False)] = None,
    warm_from: Annotated[str | None, typer.Option(
        "--from", help="Start from another study's best trials (same storage): its top "
                       "--from-top configurations run first", show_default=False,
        metavar="STUDY")] = None,
    from_top: Annotated[int, typer.Option(
        "--from-top", help="How many of --from's best trials to run first", min=1)] = 5,
    assignments: SetOption = None,
) -> None:
    """Run a study: sample, train, prune, until the budget is met."""
    def body() -> None:
        from tunecli import api
        from tunecli.api.running import Tracking

        keep = check_keep(keep_checkpoints)
        tracking = Tracking(tensorboard, wandb)
        tracking.check()
        overrides, came_from = file_overrides(assignments, n_trials=n_trials, timeout=timeout,
                                              name=name, seed=seed, fuse=fuse)
        opened = api.open_for_search(study_file, overrides, came_from, storage=storage,
                                     data_root=data_root, fork=fork, enqueue=enqueue,
                                     warm_from=warm_from, from_top=from_top)
        run_opened(opened, workers, devices, trials_per_device, data_root, keep, tracking)
    guard(body)


def run_opened(opened: Any, workers: int | None, devices: str | None, per_device: int,
         data_root: str | None, keep: str, tracking: Tracking, fuse: str | None = None) -> None:
    """Say what ``api`` found, then run the study here or as worker processes."""
    for warning in opened.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)
    for note in opened.notes:
        console.print(note, highlight=False)
    if workers not in (None, 1) or devices:
        _run_workers(opened, workers, devices, per_device, data_root, keep, tracking, fuse)
    else:
        _run_and_finish(opened, data_root, keep, tracking)


def _run_workers(opened: Any, workers: int | None, devices: str | None, per_device: int,
                 data_root: str | None, keep: str, tracking: Tracking,
                 fuse: str | None = None) -> None:
    from tunecli.api import running
    from tunecli.api.stores import mask

    spec, url = opened.spec, opened.url
    count = running.worker_count(workers, devices, per_device)
    console.print(f"study [bold]{spec.name}[/] in {escape(mask(url))}: {count} workers, "
                  f"budget {spec.budget.describe()}")
    extra = ["--keep-checkpoints", keep] + (["--data-root", data_root] if data_root else [])
    extra += tracking.worker_args()
    if spec.budget.timeout:
        extra += ["--timeout", f"{spec.budget.timeout}s"]
    if fuse is not None:
        extra += ["--fuse", fuse]
    ended = _with_live_view(opened, lambda on_line, on_tick: running.run_workers(
        opened, workers, devices, per_device, extra, on_line, on_tick))
    if EXIT_INTERRUPTED in ended.codes:
        interrupted(spec, url)
    stopped, resume_continues = _why_stopped(
        "budget" if ended.met else "timeout" if spec.budget.timeout else "", spec, ended.cut)
    summary(opened.study, spec, url, stopped or None,
            resume=resume_continues or not ended.met)
    if ended.failed:
        err_console.print(f"[red]study incomplete:[/] {ended.problem}. Continue it with: "
                          f"tunecli resume {spec.name}" + storage_option(url), soft_wrap=True)
        raise typer.Exit(2 if 2 in ended.codes else 1)
    if ended.problem:
        err_console.print(f"[yellow]warning:[/] {ended.problem}; the other workers retried its "
                          "trial and met the budget.", soft_wrap=True)


def _with_live_view(opened: Any, run: Any) -> Any:
    """The workers' trial lines, printed here, above one live view of the study read from
    the storage (each worker's trial and epoch, counts, best, time)."""
    from tunecli.api.stores import trial_counts
    from tunecli.reports.live import SearchProgress

    study, spec = opened.study, opened.spec
    with SearchProgress(console, spec.name, spec.metric, spec.budget.n_trials,
                        spec.budget.timeout, trial_counts(study)["finished"],
                        minimize=spec.direction == "minimize") as progress:
        def tick() -> None:
            progress.workers(study.get_trials(deepcopy=False), spec.trainer.epochs)
        return run(_WorkerLines(), tick)


class _WorkerLines:
    """A worker's line, printed here: a trial's line as the terminal allows (wrapped between
    its key=value words; one line in a log), a study-wide notice (fusion, a logger that
    stopped) once however many workers say it."""

    def __init__(self) -> None:
        self.said: set[str] = set()

    def __call__(self, line: str) -> None:
        from tunecli.reports.live import print_trial_line

        if not line.startswith("trial "):
            if line in self.said:
                return
            self.said.add(line)
        print_trial_line(console, line)


def _run_as_worker(opened: Any, data_root: str | None, keep: str, tracking: Tracking) -> None:
    """One of several workers: trial lines only; the parent prints the summary."""
    from tunecli import api

    plain = Console(highlight=False, force_terminal=False)
    outcome = api.run_here(opened, plain, data_root=data_root, keep_checkpoints=keep,
                           tracking=tracking)
    if outcome.stopped_by == "interrupted":
        raise typer.Exit(EXIT_INTERRUPTED)


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
    wandb: WandbOption = None,
    workers: WorkersOption = None,
    devices: DevicesOption = None,
    trials_per_device: TrialsPerDeviceOption = 1,
    fuse: FuseOption = None,
    worker: Annotated[bool, typer.Option("--worker", hidden=True,
                                         help="Run as one of search --workers")] = False,
) -> None:
    """Continue a stopped or crashed study to its budget (lost trials are retried)."""
    def body() -> None:
        from tunecli import api
        from tunecli.api.running import Tracking

        keep = check_keep(keep_checkpoints)
        tracking = Tracking(tensorboard, wandb)
        tracking.check()
        overrides, came_from = file_overrides(None, n_trials=n_trials, timeout=timeout,
                                              fuse=fuse)
        opened = api.open_for_resume(name, overrides, came_from, storage=storage,
                                     data_root=data_root)
        if worker:  # one of search --workers: trial lines only; the parent sums up
            _run_as_worker(opened, data_root, keep, tracking)
        else:
            run_opened(opened, workers, devices, trials_per_device, data_root, keep, tracking,
                       fuse)
    guard(body)
