"""Live progress of a search: finished/pruned/failed, best so far, elapsed and time left.

On a terminal it is a rich progress bar; elsewhere (CI logs, pipes) one line per trial.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from tunecli import attrs

__all__ = ["SearchProgress", "format_params"]


def format_params(params: dict[str, Any], limit: int | None = 6) -> str:
    """``key=value`` words (floats to 3 digits); past ``limit`` an ellipsis (None: all)."""
    parts = []
    for key, value in list(params.items())[:limit]:
        parts.append(f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}")
    if limit is not None and len(params) > limit:
        parts.append("…")
    return " ".join(parts)


class SearchProgress:
    """Context manager showing the study's progress; ``trial_done`` after each trial."""

    def __init__(self, console: Console, name: str, metric: str, n_trials: int | None,
                 timeout: float | None, finished_before: int, minimize: bool = False) -> None:
        self.console = console
        self.metric = metric
        self.minimize = minimize
        self.timeout = timeout
        self.started = time.monotonic()
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"), TextColumn("{task.fields[best]}"),
            TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
            TextColumn("{task.fields[deadline]}"), TextColumn("{task.fields[running]}"),
            console=console, disable=not console.is_terminal, transient=False,
        )
        self.task = self.progress.add_task(name, total=n_trials, completed=finished_before,
                                           counts="", best="", deadline="", running="")

    def __enter__(self) -> SearchProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def _deadline(self) -> str:
        if not self.timeout:
            return ""
        left = max(0.0, self.timeout - (time.monotonic() - self.started))
        return f"timeout in {int(left // 60)}:{int(left % 60):02d}"

    def epoch(self, label: str, epoch: int, epochs: int, value: float | None) -> None:
        """Inside a trial (``label``: "trial 7", or a fused group's trials): the epoch and the
        latest metric, and the countdown, once per epoch."""
        latest = f" {self.metric}={value:.4g}" if value is not None else ""
        self.progress.update(self.task, running=f"{label} epoch {epoch}/{epochs}{latest}",
                             deadline=self._deadline(), refresh=True)

    def update(self, counts: dict[str, int], best: tuple[float, dict[str, Any]] | None,
               epochs: tuple[int, int] | None = None) -> None:
        """``epochs``: (spent, budget) under a compute budget (budget.epochs)."""
        deadline = self._deadline()
        best_text = f"best {self.metric}={best[0]:.4g}" if best else ""
        self.progress.update(
            self.task, completed=counts["finished"],
            counts=(f"[green]✓{counts['complete']}[/] [yellow]✂{counts['pruned']}[/] "
                    f"[red]✗{counts['failed']}[/]"
                    + (f" ↻{counts['lost']}" if counts["lost"] else "")
                    + (f" epochs {epochs[0]}/{epochs[1]}" if epochs else "")),
            best=best_text, deadline=deadline, running="")

    def workers(self, trials: list[Any], epochs: int) -> None:
        """``--workers``: the parent's one view, read from the storage: what each worker is
        training (its trial, epoch n/N and latest metric), with the counts and the best."""
        from tunecli.engine.recovery import count_trials

        running = sorted((t for t in trials if t.state.name == "RUNNING"
                          and t.user_attrs.get(attrs.WORKER)),
                         key=lambda t: str(t.user_attrs[attrs.WORKER]))
        best = [t for t in trials if t.state.name == "COMPLETE" and t.values]
        pick = min if self.minimize else max
        top = pick(best, key=lambda t: t.values[0]) if best else None
        self.update(count_trials(trials), (top.values[0], top.params) if top else None)
        parts = []
        for t in running:
            steps = t.intermediate_values
            latest = (f" {self.metric}={steps[max(steps)]:.4g}" if steps else "")
            parts.append(f"{t.user_attrs['worker']}: trial {t.number} epoch "
                         f"{len(steps)}/{epochs}{latest}")
        self.progress.update(self.task, running="; ".join(parts) or "starting",
                             refresh=True)

    def trial_done(self, number: int, state: str, value: float | None, params: dict[str, Any],
                   seconds: float, note: str = "") -> None:
        colour = {"complete": "green", "pruned": "yellow", "fail": "red"}.get(state, "white")
        value_text = f" {self.metric}={value:.4f}" if value is not None else ""
        # Every parameter, never cut. A terminal wraps the line between "key=value" words, never
        # inside one; a log (not a terminal) keeps one line per trial, however long.
        self.console.print(f"trial {number:>4} [{colour}]{state:<8}[/]{value_text} "
                           f"{format_params(params, limit=None)} ({seconds:.1f}s)"
                           f"{' ' + note if note else ''}",
                           highlight=False, soft_wrap=not self.console.is_terminal)
