"""Running an opened study: in this process (``run_here``, with the live view), as local worker
processes (``run_workers``), with its trackers (``Tracking``: TensorBoard, W&B)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tunecli.engine.tracking import Tracking

if TYPE_CHECKING:
    import optuna
    from rich.console import Console

    from tunecli.engine.search.driver import SearchOutcome
    from tunecli.spec.models import StudySpec

__all__ = ["Opened", "Tracking", "WorkersOutcome", "run_here", "run_workers",
           "worker_count"]


@dataclass
class Opened:
    """A study ready to run: the study, its spec, the storage URL, and what to tell the user
    (warnings about the spec, a fork's new name, configurations queued to run first)."""

    study: optuna.Study
    spec: StudySpec
    url: str
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def run_here(opened: Opened, console: Console, *, data_root: str | None = None,
             keep_checkpoints: str = "best", tracking: Tracking | None = None,
             checkpoints: bool = True) -> SearchOutcome:
    """Run an opened study in this process to its budget, with the live view on ``console``
    (trial lines only where it is no terminal): why it stopped, and the counts."""
    from rich.markup import escape

    from tunecli.api.stores import trial_counts
    from tunecli.engine.search.driver import run_search
    from tunecli.reports.live import SearchProgress

    spec = opened.spec

    def say(text: str) -> None:
        console.print(escape(text), highlight=False, soft_wrap=True)

    with SearchProgress(console, spec.name, spec.metric, spec.budget.n_trials,
                        spec.budget.timeout, trial_counts(opened.study)["finished"],
                        minimize=spec.direction == "minimize") as progress:
        return run_search(opened.study, spec, opened.url, progress, say, data_root=data_root,
                          keep_checkpoints=keep_checkpoints, checkpoints=checkpoints,
                          tracking=tracking)


def worker_count(workers: int | None, devices: str | None, per_device: int) -> int:
    """How many worker processes ``--workers``/``--devices`` start (bad input: SpecError)."""
    from tunecli.engine.cluster.workers import plan

    return len(plan(workers, devices, per_device))


@dataclass
class WorkersOutcome:
    """What a run with worker processes ended in."""

    codes: list[int]             # each worker's exit code (negative: ended by that signal)
    counts: dict[str, int]
    met: bool                    # the budget (or the grid) is met in the storage
    cut: int                     # trials the time limit stopped, waiting to be continued
    problem: str                 # what went wrong ("" if nothing)
    failed: bool                 # the run failed: the budget was not reached


def run_workers(opened: Opened, workers: int | None, devices: str | None, per_device: int,
                extra_args: list[str], on_line: Callable[[str], None],
                on_tick: Callable[[], None]) -> WorkersOutcome:
    """Run the study as local worker processes (``tunecli resume NAME --worker``) until they
    end; a killed worker's trial is failed and queued for ``resume``."""
    from tunecli.engine.cluster import workers as workers_module
    from tunecli.engine.store import recovery
    from tunecli.engine.strategy.grid_queue import grid_exhausted

    study, spec = opened.study, opened.spec
    envs = workers_module.plan(workers, devices, per_device)
    codes = workers_module.run_workers(spec.name, opened.url, envs, extra_args, on_line,
                                       on_tick)
    recovery.reap_lost_trials(study)
    counts = recovery.count_trials(study.get_trials())
    grid_done = grid_exhausted(study)
    met = grid_done or (spec.budget.n_trials is not None
                        and counts["finished"] >= spec.budget.n_trials)
    problem, failed = workers_module.problem(codes, counts, spec.budget.n_trials,
                                             spec.budget.timeout is not None or grid_done)
    return WorkersOutcome(codes, counts, met,
                          recovery.cut_waiting(study.get_trials(deepcopy=False)), problem,
                          failed)
