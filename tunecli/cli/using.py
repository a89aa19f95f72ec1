"""``predict`` and ``dashboard``: use a trained model; look at a storage in optuna-dashboard."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from tunecli.cli.app import StorageOption, console, err_console, guard, output_file
from tunecli.errors import SpecError


def predict(
    model: Annotated[Path, typer.Argument(
        help="The model's .json file (tunecli train wrote it)", show_default=False)],
    source: Annotated[str, typer.Argument(
        metavar="INPUT", help="A CSV (the training columns; - reads standard input), a .npz/.pt "
                              "file with x (and y), an IDX images file, a CIFAR-10 batch, or "
                              "image files (a file, a folder, a folder of class folders)",
        show_default=False)],
    out: Annotated[Path | None, typer.Option(
        "--out", help="Write the predictions here \\[default: standard output]",
        show_default=False)] = None,
    proba: Annotated[bool, typer.Option(
        "--proba", help="Add one probability column per class")] = False,
    evaluate: Annotated[bool, typer.Option(
        "--evaluate", help="Score the predictions against the input's targets (the target "
                           "column, or y) with the model's metrics")] = False,
) -> None:
    """Predict with a trained model: CSV out (the class, or the value in the target's units)."""
    def body() -> None:
        from tunecli import api
        from tunecli.api.models import write_predictions

        output_file(out, "--out", "predictions.csv")
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            found = api.predict(model, source)
        for warning in said:
            err_console.print(f"[yellow]warning:[/] {escape(str(warning.message))}",
                              soft_wrap=True)
        if evaluate and found.scores is None:
            raise SpecError(f"{source} holds no targets to score against", source="--evaluate",
                            fix="Give the target column (CSV) or y (.npz/.pt), or drop "
                                "--evaluate.")
        if out is None:
            write_predictions(found, sys.stdout, proba)
        else:
            with out.open("w", encoding="utf-8", newline="") as handle:
                write_predictions(found, handle, proba)
            console.print(f"wrote {len(found.rows)} predictions to {escape(str(out))}",
                          highlight=False)
        if evaluate:
            _scores(found.scores or {}, found.searched, out is None)
    guard(body)


def _scores(scores: dict[str, float], searched: str, to_stderr: bool) -> None:
    """The task's metrics, the one the model was searched for first (stderr when the
    predictions go to standard output)."""
    where = err_console if to_stderr else console
    for key in sorted(scores, key=lambda k: k != searched):
        mark = "  (the search's metric)" if key == searched else ""
        where.print(f"{key:<10} {scores[key]:.4f}{mark}", highlight=False)


def dashboard(
    study: Annotated[str | None, typer.Argument(
        help="A study to open at once (its page's address is printed)", show_default=False)]
        = None,
    storage: StorageOption = None,
    host: Annotated[str, typer.Option(
        "--host", help="Address to listen on (loopback: only this machine can connect; the "
                       "dashboard has no login, so reach it from elsewhere through an SSH "
                       "tunnel: ssh -L 8080:127.0.0.1:8080 HOST)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(
        "--port", help="Port to listen on (0: any free port)", min=0, max=65535)] = 8080,
) -> None:
    """Start optuna-dashboard on the storage (needs the tunecli\\[dashboard] extra)."""
    def body() -> None:
        from tunecli import api

        served = api.dashboard(storage, host, port, study)
        console.print(f"optuna-dashboard for {escape(served.where)} at "
                      f"[bold]{served.address}[/] (Ctrl-C stops it)", highlight=False,
                      soft_wrap=True)
        sys.stdout.flush()
        try:
            served.server.serve_forever()
        except KeyboardInterrupt:
            console.print("dashboard stopped", highlight=False)
        finally:
            served.server.server_close()
    guard(body)
