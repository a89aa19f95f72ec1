"""Optional TensorBoard logging: one run per trial, as TensorBoard users expect a search to look.

``DIR/STUDY/trial-0007`` holds that trial's per-epoch metrics (scalars) and, when it ends, its
hyperparameters with the final value and state (the HPARAMS tab compares trials). Start the
viewer with ``tensorboard --logdir DIR``. Needs the ``tensorboard`` package
(``pip install 'tunecli[tensorboard]'``); it is imported only when asked for.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tunecli.errors import SpecError

__all__ = ["TensorBoardLog", "check_available"]


def check_available() -> None:
    """Fail before the search starts, not in the first trial, if tensorboard is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise SpecError("--tensorboard needs the tensorboard package, which is not installed",
                        source="--tensorboard",
                        fix="pip install 'tunecli[tensorboard]' (or pip install tensorboard), "
                            "or drop --tensorboard.") from None


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
