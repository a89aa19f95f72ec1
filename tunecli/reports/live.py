"""Live progress of a search: finished/pruned/failed, best so far, elapsed and time left.

On a terminal it is a live view below the trial lines: one status line, then one line per
thing training now (the trial, a fused group, or each ``--workers`` process). It is laid out
for the terminal's width, 80 columns first: a field that does not fit is left out whole, in a
fixed order (the bar, the study's name, the time elapsed, the time left, the best, the counts;
the finished count stays), so a number is never cut. Elsewhere (CI logs, pipes) it prints one
line per trial.
"""

from __future__ import annotations

import re
import time
from typing import Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.text import Text

from tunecli import attrs

__all__ = ["SearchProgress", "fit", "format_params", "print_trial_line", "trial_lines"]

_BAR = 20                  # cells of the bar where there is room for it
_DROPPED_FIRST = ("bar", "name", "elapsed", "left", "best", "counts")


def format_params(params: dict[str, Any], limit: int | None = 6) -> str:
    """``key=value`` words (floats to 3 digits); past ``limit`` an ellipsis (None: all)."""
    parts = []
    for key, value in list(params.items())[:limit]:
        parts.append(f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}")
    if limit is not None and len(params) > limit:
        parts.append("…")
    return " ".join(parts)


def fit(fields: dict[str, Text], width: int, dropped_first: tuple[str, ...],
        separator: str = "  ") -> Text:
    """The fields joined by ``separator``, leaving out whole fields in ``dropped_first`` order
    until the line fits ``width``; a field never named there always stays."""
    shown = dict(fields)
    for name in dropped_first:
        if sum(t.cell_len for t in shown.values()) \
                + len(separator) * max(0, len(shown) - 1) <= width:
            break
        shown.pop(name, None)
    return Text(separator).join(shown.values())


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else \
        f"{rest // 60}:{rest % 60:02d}"


class SearchProgress:
    """Context manager showing the study's progress; ``trial_done`` after each trial."""

    def __init__(self, console: Console, name: str, metric: str, n_trials: int | None,
                 timeout: float | None, finished_before: int, minimize: bool = False) -> None:
        self.console = console
        self.name = name
        self.metric = metric
        self.minimize = minimize
        self.total = n_trials
        self.timeout = timeout
        self.started = time.monotonic()
        self.finished_before = finished_before
        self.finished = finished_before
        self.counts: dict[str, int] = {}
        self.best: float | None = None
        self.epochs: tuple[int, int] | None = None
        # what trains now, one line each: (what and where, its latest metric)
        self.activity: list[tuple[str, str]] = []
        self.live = Live(self, console=console, refresh_per_second=4, transient=False) \
            if console.is_terminal else None

    def __enter__(self) -> SearchProgress:
        if self.live is not None:
            self.live.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.activity = []  # what stays on screen is the status line
            self.live.stop()

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        yield fit(self._status_fields(width), width, _DROPPED_FIRST)
        for what, latest in self.activity:
            yield fit({"what": Text(what), "latest": Text(latest)}, width, ("latest",), " ")

    def _status_fields(self, width: int) -> dict[str, Text]:
        """Every field of the status line, in the order shown."""
        c = self.counts
        fields: dict[str, Text] = {"name": Text(self.name, style="bold")}
        if self.total:
            done = min(1.0, self.finished / self.total)
            filled = round(done * _BAR)
            fields["bar"] = Text("━" * filled, style="magenta") + Text("━" * (_BAR - filled),
                                                                      style="grey23")
            fields["finished"] = Text(f"{self.finished}/{self.total}")
        else:
            fields["finished"] = Text(f"{self.finished} finished")
        if c:
            counts = Text.assemble((f"✓{c['complete']}", "green"), " ",
                                   (f"✂{c['pruned']}", "yellow"), " ",
                                   (f"✗{c['failed']}", "red"))
            if c.get("lost"):
                counts.append(f" ↻{c['lost']}")
            if self.epochs:
                counts.append(f" epochs {self.epochs[0]}/{self.epochs[1]}")
            fields["counts"] = counts
        if self.best is not None:
            fields["best"] = Text(f"best {self.metric}={self.best:.4g}")
        elapsed = time.monotonic() - self.started
        fields["elapsed"] = Text(f"{_clock(elapsed)} elapsed")
        left = self._left(elapsed)
        if left:
            fields["left"] = Text(left)
        return fields

    def _left(self, elapsed: float) -> str:
        """The time left: the rate of this run's trials over what the budget still needs,
        or the time limit where that comes first."""
        if self.total and self.finished >= self.total:
            return ""
        estimate = None
        done_here = self.finished - self.finished_before
        if self.total and done_here > 0 and self.finished < self.total:
            estimate = elapsed / done_here * (self.total - self.finished)
        if self.timeout is not None:
            limit = max(0.0, self.timeout - elapsed)
            if estimate is None or limit < estimate:
                return f"{_clock(limit)} left (time limit)"
        return f"~{_clock(estimate)} left" if estimate is not None else ""

    def epoch(self, label: str, epoch: int, epochs: int, value: float | None) -> None:
        """Inside a trial (``label``: "trial 7", or a fused group's trials): the epoch and the
        latest metric."""
        latest = f"{self.metric}={value:.4g}" if value is not None else ""
        self.activity = [(f"{label} epoch {epoch}/{epochs}", latest)]
        self._refresh()

    def update(self, counts: dict[str, int], best: tuple[float, dict[str, Any]] | None,
               epochs: tuple[int, int] | None = None) -> None:
        """``epochs``: (spent, budget) under a compute budget (budget.epochs)."""
        self.counts = counts
        self.finished = counts["finished"]
        self.best = best[0] if best else None
        self.epochs = epochs
        self.activity = []
        self._refresh()

    def workers(self, trials: list[Any], epochs: int) -> None:
        """``--workers``: the parent's one view, read from the storage: what each worker is
        training (its trial, epoch n/N and latest metric), with the counts and the best."""
        from tunecli.engine.store.recovery import count_trials

        running = sorted((t for t in trials if t.state.name == "RUNNING"
                          and t.user_attrs.get(attrs.WORKER)),
                         key=lambda t: str(t.user_attrs[attrs.WORKER]))
        best = [t for t in trials if t.state.name == "COMPLETE" and t.values]
        pick = min if self.minimize else max
        top = pick(best, key=lambda t: t.values[0]) if best else None
        self.update(count_trials(trials), (top.values[0], top.params) if top else None)
        lines = []
        for t in running:
            steps = t.intermediate_values
            latest = (f"{self.metric}={steps[max(steps)]:.4g}" if steps else "")
            lines.append((f"{t.user_attrs[attrs.WORKER]}: trial {t.number} epoch "
                          f"{len(steps)}/{epochs}", latest))
        self.activity = lines or [("starting", "")]
        self._refresh()

    def _refresh(self) -> None:
        if self.live is not None:
            self.live.refresh()

    def trial_done(self, number: int, state: str, value: float | None, params: dict[str, Any],
                   seconds: float, note: str = "") -> None:
        value_text = f" {self.metric}={value:.4f}" if value is not None else ""
        print_trial_line(self.console, f"trial {number:>4} {state:<8}{value_text} "
                                       f"{format_params(params, limit=None)} ({seconds:.1f}s)"
                                       f"{' ' + note if note else ''}")


# A trial line's words that stay together: its number and state, each key=value, the seconds,
# a bracketed note, "after epoch N"; anything else is a word of its own.
_ATOMS = re.compile(r"trial\s+\d+ \S+ *|\S+=\S+|\([^()]*\)|after epoch \d+:?|\S+")
_COLOURS = {"complete": "green", "pruned": "yellow", "fail": "red", "cut": "yellow",
            "interrupted": "yellow"}


def trial_lines(line: str, width: int) -> list[str]:
    """A trial's line as a terminal of ``width`` shows it: broken only between its words
    (never inside a key=value), the later lines indented."""
    lines: list[str] = []
    current = ""
    for atom in _ATOMS.findall(line):
        joined = current + ("" if not current or current.endswith(" ") else " ") + atom
        if current and len(joined.rstrip()) > width:
            lines.append(current.rstrip())
            joined = f"  {atom}"
        current = joined
    return [*lines, current.rstrip()] if current else lines


def print_trial_line(console: Console, line: str) -> None:
    """A trial's line: on a terminal wrapped by ``trial_lines``, its state coloured; in a log
    (not a terminal) one line, however long."""
    if not console.is_terminal:
        console.print(line, highlight=False, markup=False, soft_wrap=True)
        return
    state = line.split()[2] if line.startswith("trial ") and len(line.split()) > 2 else ""
    for i, physical in enumerate(trial_lines(line, console.width)):
        text = Text(physical)
        if i == 0 and state in _COLOURS:
            text.highlight_words([state], style=_COLOURS[state])
        console.print(text, highlight=False, soft_wrap=True)
