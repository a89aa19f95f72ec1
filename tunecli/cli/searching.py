"""``search`` and ``resume``: run a study here, or as local worker processes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from tunecli.cli.app import (
    DataRootOption,
    DevicesOption,
    FuseOption,
    KeepOption,
    StorageOption,
    TensorBoardOption,
    TrialsPerDeviceOption,
    WandbOption,
    WorkersOption,
    check_keep,
    console,
    err_console,
    fuse_value,
    given,
    guard,
    interrupted,
    storage_option,
    summary,
)
from tunecli.engine.tracking import Tracking
from tunecli.errors import EXIT_INTERRUPTED, SpecError

_STOP_REASONS = {"budget": "the budget is met", "grid": "every grid point was tried",
                 "elsewhere": "the last trials are running in other workers"}


def _why_stopped(outcome: Any, spec: Any) -> tuple[str, bool]:
    """Why the run stopped, in words, and whether ``resume`` would continue anything."""
    if outcome.stopped_by != "timeout":
        return _STOP_REASONS.get(outcome.stopped_by, outcome.stopped_by), False
    text = f"the time limit ({spec.budget.timeout:g}s) was reached"
    cut = outcome.extra.get("cut", 0)
    if cut:
        text += (f"; {cut} running trial{'s were' if cut > 1 else ' was'} stopped after "
                 "its last stored epoch, and tunecli resume continues "
                 f"{'them' if cut > 1 else 'it'} from there (--timeout sets a new limit)")
    return text, True


def _run_and_finish(study: Any, spec: Any, url: str, data_root: str | None, keep: str,
                    tracking: Tracking) -> None:
    from tunecli.engine import run as run_loop
    from tunecli.engine.storage import mask

    console.print(f"study [bold]{spec.name}[/] in {escape(mask(url))}: "
                  f"{escape(spec.describe_aims())}, sampler {spec.sampler.type}, "
                  f"pruner {spec.pruner.type}, "
                  f"budget {spec.budget.describe()}")
    try:
        outcome = run_loop.run(study, spec, url, console, data_root=data_root,
                                   keep_checkpoints=keep, tracking=tracking)
    except KeyboardInterrupt:
        interrupted(spec, url)
    if outcome.stopped_by == "interrupted":
        interrupted(spec, url)
    stopped, resume_continues = _why_stopped(outcome, spec)
    summary(study, spec, url, stopped, resume=resume_continues)


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
    assignments: Annotated[list[str] | None, typer.Option(
        "--set", help="Override any key of the file: --set pruner.type=none (YAML value; "
                      "repeatable)", show_default=False)] = None,
) -> None:
    """Run a study: sample, train, prune, until the budget is met."""
    def body() -> None:
        from tunecli import spec as spec_module
        from tunecli.engine import preflight
        from tunecli.engine import study as study_module
        from tunecli.engine.storage import resolve_url
        from tunecli.spec import checks

        keep = check_keep(keep_checkpoints)
        tracking = Tracking(tensorboard, wandb)
        tracking.check()
        overrides = {**spec_module.parse_assignments(assignments or []),
                     **given({"budget.n_trials": n_trials, "budget.timeout": timeout,
                               "name": name, "sampler.seed": seed,
                               "trainer.fuse": fuse_value(fuse)})}
        spec = spec_module.load(study_file, overrides)
        url = resolve_url(storage, spec.storage)
        preflight.preflight(spec, data_root, str(study_file))
        for warning in checks.warnings(spec):
            err_console.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)
        spec = study_module.with_resolved_data_root(spec, data_root)
        if fork:
            spec = _forked(spec, url, str(study_file))
        configs: list[dict[str, Any]] = []
        sources = []
        if enqueue is not None:
            from tunecli.engine.enqueue import read_configurations

            configs += read_configurations(enqueue, spec)  # checked before anything is stored
            sources.append(str(enqueue))
        if warm_from is not None:
            configs += _top_of(warm_from, url, spec, from_top)
            sources.append(f"study '{warm_from}'")
        study = study_module.open_for_search(spec, url, str(study_file),
                                             known_first=bool(configs))
        if configs:
            from tunecli.engine.enqueue import enqueue as enqueue_configs

            queued = enqueue_configs(study, configs)
            console.print(f"queued {queued} of {len(configs)} configurations from "
                          f"{' and '.join(sources)} to run first", highlight=False)
        if workers not in (None, 1) or devices:
            _run_workers(study, spec, url, workers, devices, trials_per_device, data_root, keep,
                         tracking)
        else:
            _run_and_finish(study, spec, url, data_root, keep, tracking)
    guard(body)


def _run_workers(study: Any, spec: Any, url: str, workers: int | None, devices: str | None,
                 per_device: int, data_root: str | None, keep: str,
                 tracking: Tracking, fuse: str | None = None) -> None:
    from tunecli.engine import recovery
    from tunecli.engine import workers as workers_module
    from tunecli.engine.samplers import grid_exhausted
    from tunecli.engine.storage import mask

    envs = workers_module.plan(workers, devices, per_device)
    console.print(f"study [bold]{spec.name}[/] in {escape(mask(url))}: {len(envs)} workers, "
                  f"budget {spec.budget.describe()}")
    extra = ["--keep-checkpoints", keep] + (["--data-root", data_root] if data_root else [])
    extra += tracking.worker_args()
    if spec.budget.timeout:
        extra += ["--timeout", f"{spec.budget.timeout}s"]
    if fuse is not None:
        extra += ["--fuse", fuse]
    codes = _with_live_view(study, spec, lambda on_line, on_tick: workers_module.run_workers(
        spec.name, url, envs, extra, on_line, on_tick))
    if EXIT_INTERRUPTED in codes:
        interrupted(spec, url)
    recovery.reap_lost_trials(study)  # a killed worker's trial: failed, queued for resume
    counts = recovery.count_trials(study.get_trials())
    met = grid_exhausted(study) or (spec.budget.n_trials is not None
                                    and counts["finished"] >= spec.budget.n_trials)
    summary(study, spec, url, resume=not met)
    problem, failed = workers_module.problem(
        codes, counts, spec.budget.n_trials,
        spec.budget.timeout is not None or grid_exhausted(study))
    if failed:
        err_console.print(f"[red]study incomplete:[/] {problem}. Continue it with: tunecli "
                          f"resume {spec.name}" + storage_option(url), soft_wrap=True)
        raise typer.Exit(2 if 2 in codes else 1)
    if problem:
        err_console.print(f"[yellow]warning:[/] {problem}; the other workers retried its "
                          "trial and met the budget.", soft_wrap=True)


def _top_of(name: str, url: str, spec: Any, k: int) -> list[dict[str, Any]]:
    """``--from NAME``: that study's best configurations (checked before anything is stored)."""
    from tunecli.engine import study as study_module
    from tunecli.engine.enqueue import top_configurations
    from tunecli.engine.storage import describe, open_storage

    if name == spec.name:
        raise SpecError(f"--from names this study ('{name}')", source="--from",
                        fix="Give another study, or resume this one: tunecli resume NAME.")
    storage = open_storage(url, heartbeat=False)
    if name not in study_module.study_names(storage):
        from tunecli.errors import did_you_mean

        names = study_module.study_names(storage)
        raise SpecError(f"no study '{name}' in {describe(url)}", source="--from",
                        fix=did_you_mean(name, names) or "List them with: tunecli list.")
    import optuna

    return top_configurations(optuna.load_study(study_name=name, storage=storage), name, spec, k)


def _with_live_view(study: Any, spec: Any, run: Any) -> list[int]:
    """The workers' trial lines, printed here, above one live view of the study read from
    the storage (each worker's trial and epoch, counts, best, time)."""
    from tunecli.engine.progress import SearchProgress
    from tunecli.engine.recovery import count_trials

    finished = count_trials(study.get_trials(deepcopy=False))["finished"]
    with SearchProgress(console, spec.name, spec.metric, spec.budget.n_trials,
                        spec.budget.timeout, finished,
                        minimize=spec.direction == "minimize") as progress:
        def tick() -> None:
            progress.workers(study.get_trials(deepcopy=False), spec.trainer.epochs)
        codes: list[int] = run(lambda line: console.print(line, highlight=False, markup=False,
                                                          soft_wrap=True), tick)
    return codes


def _forked(spec: Any, url: str, source: str) -> Any:
    """The first free NAME-k whose stored spec matches, or a new one."""
    from tunecli import spec as spec_module
    from tunecli.engine import study as study_module
    from tunecli.engine.storage import open_storage

    names = set(study_module.study_names(open_storage(url, heartbeat=False)))
    candidate, k = spec.name, 1
    while candidate in names:
        import optuna

        stored = study_module.stored_spec(optuna.load_study(study_name=candidate,
                                                            storage=open_storage(url)))
        if stored and not spec_module.objective_diff(stored, spec.stored()):
            break
        k += 1
        candidate = f"{spec.name}-{k}"
    if candidate != spec.name:
        console.print(f"The spec differs from the stored study '{spec.name}': running it as "
                      f"'{candidate}'.")
    return spec.model_copy(update={"name": candidate})


def _run_as_worker(study: Any, spec: Any, url: str, data_root: str | None, keep: str,
                   tracking: Tracking) -> None:
    """One of several workers: trial lines only; the parent prints the summary."""
    import torch

    from tunecli.engine import run as run_loop

    threads = os.environ.get("TUNECLI_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    plain = Console(highlight=False, force_terminal=False)
    outcome = run_loop.run(study, spec, url, plain, data_root=data_root,
                               keep_checkpoints=keep, tracking=tracking)
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
        from tunecli.engine import preflight
        from tunecli.engine import study as study_module
        from tunecli.engine.storage import resolve_url

        keep = check_keep(keep_checkpoints)
        tracking = Tracking(tensorboard, wandb)
        tracking.check()
        url = resolve_url(storage)
        overrides = given({"budget.n_trials": n_trials, "budget.timeout": timeout,
                           "trainer.fuse": fuse_value(fuse)})  # fuse: this run only
        study, spec = study_module.load(name, url, overrides=overrides)
        if "budget.n_trials" in overrides:  # the new budget is the study's from now on
            stored = study_module.stored_spec(study) or spec.stored()
            stored["budget"] = {**stored["budget"], "n_trials": spec.budget.n_trials}
            study_module.store_spec(study, stored)
        preflight.preflight(spec, data_root, f"study '{name}'")
        if worker:
            _run_as_worker(study, spec, url, data_root, keep, tracking)
        elif workers not in (None, 1) or devices:
            _run_workers(study, spec, url, workers, devices, trials_per_device, data_root, keep,
                         tracking, fuse)
        else:
            _run_and_finish(study, spec, url, data_root, keep, tracking)
    guard(body)
