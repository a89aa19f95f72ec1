"""Optional experiment tracking, one run per trial: TensorBoard (``--tensorboard DIR``) and
Weights & Biases (``--wandb PROJECT``), as users of each expect a search to look.

TensorBoard: ``DIR/STUDY/trial-0007`` holds that trial's per-epoch metrics (scalars) and, when it
ends, its hyperparameters with the final value and state (the HPARAMS tab compares trials).
W&B: one run per trial in PROJECT, grouped by study (``group``), named ``STUDY/trial-0007``, with
the trial's configuration, every epoch's metrics (``step`` = epoch) and, in the summary, its
state, value (a pruned trial's: its last epoch's) and epochs; ``WANDB_MODE=offline`` keeps
everything on disk (``wandb sync`` later). Each needs its package (``pip install
'tunecli[tensorboard]'`` / ``'tunecli[wandb]'``), imported only when asked for; a missing one
stops the search before anything runs (exit 2).
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tunecli.errors import SpecError

__all__ = ["TensorBoardLog", "Tracker", "Tracking", "WandbLog", "check_available"]


class Tracker(Protocol):
    """What the objective tells a tracker about each trial."""

    def trial_started(self, number: int, params: dict[str, Any]) -> None: ...

    def epoch(self, number: int, epoch: int, metrics: dict[str, float]) -> None: ...

    def trial_finished(self, number: int, state: str, value: float | None) -> None: ...

    def discard(self, number: int) -> None: ...


@dataclass(frozen=True)
class Tracking:
    """The trackers a run was asked for (``--tensorboard DIR``, ``--wandb PROJECT``)."""

    tensorboard: Path | None = None
    wandb: str | None = None

    def check(self) -> None:
        if self.tensorboard is not None:
            check_available()
            _check_writable(self.tensorboard)
        if self.wandb is not None:
            check_wandb()

    def worker_args(self) -> list[str]:
        """The same tracking for ``--workers`` processes."""
        return ((["--tensorboard", str(self.tensorboard.resolve())] if self.tensorboard
                 else []) + (["--wandb", self.wandb] if self.wandb else []))

    def open(self, study_name: str, metric: str,
             warn: Callable[[str], None] = print) -> Tracker | None:
        """The trackers asked for, each guarded: one that fails mid-study (its server went
        away) is said once through ``warn`` and dropped; the search goes on."""
        trackers: list[Tracker] = []
        if self.tensorboard is not None:
            trackers.append(_Guarded(TensorBoardLog(self.tensorboard, study_name, metric),
                                     "--tensorboard", warn))
        if self.wandb is not None:
            trackers.append(_Guarded(WandbLog(self.wandb, study_name, metric), "--wandb",
                                     warn))
        return trackers[0] if len(trackers) == 1 else _Both(trackers) if trackers else None


class _Guarded:
    """A tracker whose failure stops its logging, never the search: trials are stored by
    Optuna whatever happens to a logger."""

    def __init__(self, tracker: Tracker, option: str, warn: Callable[[str], None]) -> None:
        self.tracker: Tracker | None = tracker
        self.option = option
        self.warn = warn

    def _call(self, method: str, *args: Any) -> None:
        if self.tracker is None:
            return
        try:
            getattr(self.tracker, method)(*args)
        except Exception as exc:
            self.tracker = None
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            self.warn(f"{self.option} stopped logging ({type(exc).__name__}: {first}); the "
                      "search goes on without it")

    def trial_started(self, number: int, params: dict[str, Any]) -> None:
        self._call("trial_started", number, params)

    def epoch(self, number: int, epoch: int, metrics: dict[str, float]) -> None:
        self._call("epoch", number, epoch, metrics)

    def trial_finished(self, number: int, state: str, value: float | None) -> None:
        self._call("trial_finished", number, state, value)

    def discard(self, number: int) -> None:
        self._call("discard", number)


class _Both:
    """Several trackers told the same."""

    def __init__(self, trackers: list[Tracker]) -> None:
        self.trackers = trackers

    def trial_started(self, number: int, params: dict[str, Any]) -> None:
        for tracker in self.trackers:
            tracker.trial_started(number, params)

    def epoch(self, number: int, epoch: int, metrics: dict[str, float]) -> None:
        for tracker in self.trackers:
            tracker.epoch(number, epoch, metrics)

    def trial_finished(self, number: int, state: str, value: float | None) -> None:
        for tracker in self.trackers:
            tracker.trial_finished(number, state, value)

    def discard(self, number: int) -> None:
        for tracker in self.trackers:
            tracker.discard(number)


_OFFLINE_MODES = ("offline", "dryrun", "disabled")


def check_wandb() -> None:
    """Fail before the search starts if W&B cannot log: not installed, or online (its default)
    with no API key, where every trial's ``wandb.init`` would fail. Nothing is sent: the key is
    looked for where W&B looks (WANDB_API_KEY, its settings files, .netrc), not verified."""
    try:
        import wandb
    except ImportError:
        raise SpecError("--wandb needs the wandb package, which is not installed",
                        source="--wandb",
                        fix="pip install 'tunecli[wandb]' (or pip install wandb), or drop "
                            "--wandb.") from None
    if wandb.setup().settings.mode in _OFFLINE_MODES:
        return
    with contextlib.redirect_stderr(io.StringIO()):  # its notes on where it found the key
        logged_in = wandb.login(verify=False, prompt=False)
    if not logged_in:
        raise SpecError("W&B is online (its default) but no API key is configured",
                        source="--wandb",
                        fix="Run wandb login (or set WANDB_API_KEY), or set WANDB_MODE=offline "
                            "to log on disk and upload later with wandb sync.")


def check_available() -> None:
    """Fail before the search starts, not in the first trial, if tensorboard is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise SpecError("--tensorboard needs the tensorboard package, which is not installed",
                        source="--tensorboard",
                        fix="pip install 'tunecli[tensorboard]' (or pip install tensorboard), "
                            "or drop --tensorboard.") from None


def _check_writable(folder: Path) -> None:
    """The TensorBoard folder can be made and written to, said before anything runs."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise SpecError(f"cannot write to {folder} ({exc.strerror or exc})",
                        source="--tensorboard",
                        fix="Give a folder you can write to.") from None


def _hparam(value: Any) -> bool | int | float | str:
    # TensorBoard's hparams take numbers, strings and booleans only.
    if isinstance(value, (bool, int, float, str)):
        return value
    return "none" if value is None else str(value)


class TensorBoardLog:
    """Writers for the trials of one study, opened when a trial starts, closed when it ends."""

    def __init__(self, root: Path, study_name: str, metric: str) -> None:
        check_available()
        self.folder = Path(root) / study_name
        self.metric = metric
        self.writers: dict[int, Any] = {}
        self.params: dict[int, dict[str, Any]] = {}
        self.reported: dict[int, list[float]] = {}  # the metric of each epoch logged

    def trial_started(self, number: int, params: dict[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writers[number] = SummaryWriter(str(self.folder / f"trial-{number:04d}"))
        self.params[number] = params
        self.reported[number] = []

    def epoch(self, number: int, epoch: int, metrics: dict[str, float]) -> None:
        writer = self.writers.get(number)
        if writer is None:
            return
        for key, value in metrics.items():
            writer.add_scalar(key, value, epoch)
        writer.flush()
        self.reported[number].append(metrics[self.metric])

    def trial_finished(self, number: int, state: str, value: float | None) -> None:
        """Write the hparams record (the HPARAMS tab) and close the trial's run.

        ``value``: the trial's result; a pruned trial records the metric of the last epoch it
        reported, a failed or interrupted one none (NaN).
        """
        from torch.utils.tensorboard.summary import hparams

        writer = self.writers.pop(number, None)
        reported = self.reported.pop(number, [])
        if writer is None:
            return
        if state == "pruned" and reported:
            value = reported[-1]
        epochs = len(reported)
        params = {k: _hparam(v) for k, v in self.params.pop(number, {}).items()}
        params["state"] = state
        metrics = {f"hparam/{self.metric}": float("nan") if value is None else float(value),
                   "hparam/epochs": float(epochs)}
        # tensorboard ships no type information for its summary helpers
        experiment, start, end = hparams(params, metrics)  # type: ignore[no-untyped-call]
        for summary in (experiment, start, end):
            writer.file_writer.add_summary(summary)
        for key, metric_value in metrics.items():
            writer.add_scalar(key, metric_value)
        writer.close()

    def discard(self, number: int) -> None:
        """Close and remove a run that turned out not to be a trial (a worker's lost race)."""
        writer = self.writers.pop(number, None)
        self.params.pop(number, None)
        self.reported.pop(number, None)
        if writer is not None:
            writer.close()
            shutil.rmtree(self.folder / f"trial-{number:04d}", ignore_errors=True)


class WandbLog:
    """One W&B run per trial, several open at once (a fused group's members train together)."""

    def __init__(self, project: str, study_name: str, metric: str) -> None:
        check_wandb()
        self.project = project
        self.study_name = study_name
        self.metric = metric
        self.runs: dict[int, Any] = {}
        self.reported: dict[int, list[float]] = {}

    def trial_started(self, number: int, params: dict[str, Any]) -> None:
        import wandb

        self.runs[number] = wandb.init(
            project=self.project, group=self.study_name, job_type="trial",
            name=f"{self.study_name}/trial-{number:04d}", config=dict(params),
            reinit="create_new", settings=wandb.Settings(console="off", silent=True))
        self.runs[number].config.update({"trial": number, "study": self.study_name})
        self.reported[number] = []

    def epoch(self, number: int, epoch: int, metrics: dict[str, float]) -> None:
        run = self.runs.get(number)
        if run is None:
            return
        run.log({**metrics, "epoch": epoch}, step=epoch)
        self.reported[number].append(metrics[self.metric])

    def trial_finished(self, number: int, state: str, value: float | None) -> None:
        run = self.runs.pop(number, None)
        reported = self.reported.pop(number, [])
        if run is None:
            return
        if state == "pruned" and reported:
            value = reported[-1]
        # "value": the trial's result as Optuna stores it (the metric's own summary entry is
        # its last epoch, which W&B keeps up to date itself)
        run.summary.update({"state": state, "epochs": len(reported),
                            "value": float("nan") if value is None else float(value)})
        run.finish(exit_code=0 if state in ("complete", "pruned") else 1)

    def discard(self, number: int) -> None:
        """A worker's lost race: not a trial. Its run is closed and marked, not kept open."""
        run = self.runs.pop(number, None)
        self.reported.pop(number, None)
        if run is not None:
            run.summary.update({"state": "surplus"})
            run.finish(exit_code=0)
