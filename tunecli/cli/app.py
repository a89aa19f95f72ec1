"""The Typer app and what every command shares: options, the error guard, printed next steps.

Exit codes: 0 done, 1 the study failed, 2 bad input, 130 interrupted (resume continues it).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from tunecli import __version__
from tunecli.errors import EXIT_INTERRUPTED, SpecError, TunecliError

app = typer.Typer(
    name="tunecli",
    help="Hyperparameter search for PyTorch models from a YAML study, driven by Optuna.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


class _Console(Console):
    """Rich's console, except that a reader who closed the pipe (``| head``) ends the command
    quietly with exit 0: rich's own choice is exit 1, which scripts read as a failure."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        _silence_stdout()
        raise SystemExit(0)


console = _Console(highlight=False)
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
FuseOption = Annotated[str | None, typer.Option(
    "--fuse", help="Trials trained together as one batched model: auto, 1 (off) or K "
                   "(overrides trainer.fuse)", show_default=False)]
TensorBoardOption = Annotated[Path | None, typer.Option(
    "--tensorboard", help="Log each trial as a TensorBoard run under DIR/STUDY (needs the "
                          "tensorboard package)", show_default=False)]
NTrialsOption = Annotated[int | None, typer.Option(
    "--n-trials", help="Finished trials to reach (overrides budget.n_trials)")]
TimeoutOption = Annotated[str | None, typer.Option(
    "--timeout", help="Wall time for this run, e.g. 10m (overrides budget.timeout)")]
NameOption = Annotated[str | None, typer.Option("--name", help="Study name (overrides name:)")]
SeedOption = Annotated[int | None, typer.Option(
    "--seed", help="Sampler seed (overrides sampler.seed)")]
SetOption = Annotated[list[str] | None, typer.Option(
    "--set", help="Override any key of the file: --set pruner.type=none (YAML value; "
                  "repeatable)", show_default=False)]
WandbOption = Annotated[str | None, typer.Option(
    "--wandb", help="Log each trial as a Weights & Biases run in PROJECT, grouped by study "
                    "(needs the wandb package; WANDB_MODE=offline keeps it on disk)",
    show_default=False, metavar="PROJECT")]


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


def guard(action: Callable[[], T]) -> T:
    """Run a command body: tunecli errors become one line and an exit code, not a traceback."""
    try:
        return action()
    except TunecliError as exc:
        if _state["debug"]:  # the traceback too, but the same exit code
            import traceback

            traceback.print_exc()
        from tunecli.api.stores import mask

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
    except BrokenPipeError:  # the reader went away (| head): what it wanted, it got
        _silence_stdout()
        raise typer.Exit(0) from None


def _silence_stdout() -> None:
    """Point standard output at /dev/null, so the flush at exit does not fail a second time
    on the closed pipe (Python's documented way to end quietly on SIGPIPE)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def check_keep(keep: str) -> str:
    if keep not in ("none", "best", "all"):
        raise SpecError(f"'{keep}' is not one of none, best, all", source="--keep-checkpoints",
                        fix="Write --keep-checkpoints best.")
    return keep


def output_file(path: Path | None, option: str, example: str) -> Path | None:
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


def storage_option(url: str) -> str:
    """The --storage a printed command needs: none for the default, else the URL with a file's
    path made absolute, so the command also runs from another folder."""
    from tunecli.api.stores import DEFAULT_URL, describe

    return "" if url == DEFAULT_URL else f" --storage '{describe(url)}'"


def commands(spec: Any, url: str, *, resume: bool = True) -> str:
    """The next commands: report, train (the built-in trainer's studies), and resume where it
    would do something."""
    storage, name = storage_option(url), spec.name
    lines = [f"  report: tunecli report {name}{storage} --html {name}-report.html"]
    if spec.trainer.kind == "builtin":
        lines.append(f"  train:  tunecli train {name}{storage}")
    if resume:
        lines.append(f"  resume: tunecli resume {name}{storage}")
    return "\n".join(lines)


def interrupted(spec: Any, url: str) -> NoReturn:
    err_console.print("[yellow]Interrupted.[/] Finished trials are stored; the running "
                      "trial will be retried from its last checkpoint.\n"
                      + commands(spec, url), highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_INTERRUPTED)


def summary(study: Any, spec: Any, url: str, stopped: str | None = None, *,
            resume: bool = True) -> None:
    """What a finished search prints: the report, why it stopped, what to run next
    (``resume``: whether continuing the study would do anything)."""
    from tunecli.reports import summary as report
    from tunecli.reports import terminal

    console.print()
    terminal.show(console, report.summary(study, spec), top=5)
    if stopped:
        console.print(f"Stopped: {escape(stopped)}.", soft_wrap=True)
    console.print(commands(spec, url, resume=resume), highlight=False, soft_wrap=True)


def fuse_value(fuse: str | None) -> str | int | None:
    """--fuse as the spec takes it: "auto", or a whole number (checked with the spec)."""
    if fuse is None or fuse == "auto":
        return fuse
    return int(fuse) if fuse.strip().isdigit() else fuse


_OPTION_FOR = {"budget.n_trials": "--n-trials", "budget.timeout": "--timeout", "name": "--name",
               "sampler.seed": "--seed", "trainer.fuse": "--fuse"}


def given(options: dict[str, Any]) -> dict[str, Any]:
    """Overrides from the options the user gave; one not given changes nothing (not even a
    --set of the same key)."""
    return {key: value for key, value in options.items() if value is not None}


def origins(overrides: dict[str, Any]) -> dict[str, str]:
    """The option each of these overrides came from, so a bad value is blamed on it."""
    return {key: _OPTION_FOR[key] for key in overrides if key in _OPTION_FOR}


def file_overrides(assignments: list[str] | None, *, n_trials: int | None = None,
                   timeout: str | None = None, name: str | None = None,
                   seed: int | None = None, fuse: str | None = None
                   ) -> tuple[dict[str, Any], dict[str, str]]:
    """What ``search``, ``validate`` and ``resume`` change: ``--set`` and the options given
    (an option wins over a --set of its key), and which option gave each key."""
    from tunecli.spec import parse_assignments

    options = given({"budget.n_trials": n_trials, "budget.timeout": timeout, "name": name,
                     "sampler.seed": seed, "trainer.fuse": fuse_value(fuse)})
    return {**parse_assignments(assignments or []), **options}, origins(options)


def main() -> None:
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")
    app()
