"""The end of an epoch, for a configuration trained alone (``loop``) or as a member of a fused
group (``group_loop``): one place that completes its metrics, fails it on a NaN or infinite value or
on running out of memory, records it, decides early stopping and builds the result. The two
loops differ in how they compute a step (one model, or K stacked); what a trial *is* lives here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from tunecli.errors import TrialFailed

__all__ = [
    "Progress",
    "Reporter",
    "TrainResult",
    "batch_starts",
    "diverged",
    "epoch_metrics",
    "examples_in_epoch",
    "last_epoch",
    "out_of_memory",
    "result",
    "squared_error",
]


class Reporter(Protocol):
    """Receives each epoch's metrics; raising (e.g. optuna.TrialPruned) stops the trial."""

    def report(self, epoch: int, metrics: dict[str, float]) -> None: ...


@dataclass
class TrainResult:
    value: float                 # the metric at the best epoch
    best_epoch: int
    epochs_run: int
    history: list[dict[str, float]]
    params_count: int
    device: str
    samples_per_second: float
    stopped_early: bool = False
    train_seconds: float = 0.0
    threads: int = 0             # CPU threads it trained with (0: on a GPU)
    # Final training only: metrics on the held-out test part, measured once at the end.
    test_metrics: dict[str, float] = field(default_factory=dict)
    # The whole configuration trained: loop and model defaults with the given params on top.
    config: dict[str, Any] = field(default_factory=dict)
    # The trained weights (of the last epoch), for `tunecli train`; never stored in Optuna.
    state_dict: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    # trainer.repeats / cv: {"kind", "runs", "values" (each run at the best epoch), "std"}
    spread: dict[str, Any] = field(default_factory=dict)


@dataclass
class Progress:
    """Where a trial stands: what its checkpoint saves and a retry restores."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_value: float = math.nan
    best_epoch: int = 0
    since_best: int = 0
    next_epoch: int = 1

    def track(self, epoch: int, value: float, minimize: bool) -> None:
        if math.isnan(self.best_value) or (value < self.best_value if minimize
                                           else value > self.best_value):
            self.best_value, self.best_epoch, self.since_best = value, epoch, 0
        else:
            self.since_best += 1

    def record(self, epoch: int, metrics: dict[str, float], name: str, value: float,
               minimize: bool) -> None:
        """The epoch's metrics, ranked by ``value`` (the metric ``name``, or the training loss
        in final training); a NaN or infinite value fails the trial."""
        if not math.isfinite(value):
            raise TrialFailed(f"{name} became {value} in epoch {epoch}")
        self.track(epoch, value, minimize)
        self.history.append({"epoch": epoch, **metrics})
        self.next_epoch = epoch + 1

    def stalled(self, patience: int | None) -> bool:
        """Early stopping: ``patience`` epochs without a better value (0 or None: never)."""
        return bool(patience and self.since_best >= patience)


def last_epoch(epochs: int, stop_after: int | None) -> int:
    """The epoch a run ends after: ``trainer.epochs``, or the budget's shorter claim."""
    return epochs if stop_after is None else min(epochs, stop_after)


def examples_in_epoch(n_train: int, shares: list[float], epoch: int) -> int:
    """How many of the ``n_train`` examples epoch ``epoch`` trains on: its share in
    ``trainer.data_shares`` (at least one batch's worth of two), all of them past the list."""
    if epoch > len(shares):
        return n_train
    return min(n_train, max(2, round(n_train * shares[epoch - 1])))


def batch_starts(n_train: int, batch_size: int) -> list[int]:
    """Where each step's batch starts in the shuffled order; a batch of one example is left
    out (it breaks batch norm and adds only noise), unless it is all the data."""
    return [start for start in range(0, n_train, batch_size)
            if n_train == 1 or min(batch_size, n_train - start) >= 2]


def squared_error(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A regression's loss: the mean squared error over the batch (the last axis), for one
    model's ``[batch, 1]`` outputs or K stacked models' ``[K, batch, 1]``."""
    return ((out.squeeze(-1) - target) ** 2).mean(-1)


def diverged(train_loss: float, epoch: int, lr: Any) -> TrialFailed | None:
    """The failure of a training loss that became NaN or infinite (None: it is finite)."""
    if math.isfinite(train_loss):
        return None
    return TrialFailed(f"the training loss became {train_loss} in epoch {epoch} (lr={lr}); "
                       "lower the learning rate range")


def out_of_memory(device: torch.device, batch_size: Any, n_params: int | None = None
                  ) -> TrialFailed:
    """The failure of a configuration too large for the device (its memory is given back)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    size = f" and {n_params:,} parameters" if n_params is not None else ""
    return TrialFailed(f"out of memory on {device} with batch_size {batch_size}{size}; lower "
                       "batch_size or the model size")


def epoch_metrics(scores: dict[str, float], train_loss: float, seconds: float, n_train: int,
                  lr: float, **extra: float) -> dict[str, float]:
    """What every epoch reports: the validation scores, the training loss, its speed, its
    learning rate (and, for a fused member, how many trained alongside)."""
    return {**scores, "train_loss": train_loss, "epoch_seconds": seconds,
            "samples_per_second": n_train / seconds if seconds else 0.0, "lr": lr, **extra}


def result(progress: Progress, *, params_count: int, device: torch.device, seen: int,
           elapsed: float, stopped_early: bool, config: dict[str, Any],
           **final: Any) -> TrainResult:
    """The trial's result: its best epoch's value, its history and how fast it trained
    (``seen``: examples trained on). ``final``: test metrics and weights of final training."""
    return TrainResult(value=progress.best_value, best_epoch=progress.best_epoch,
                       epochs_run=len(progress.history), history=progress.history,
                       params_count=params_count, device=str(device),
                       samples_per_second=seen / elapsed if elapsed else 0.0,
                       stopped_early=stopped_early, train_seconds=elapsed, config=config,
                       threads=torch.get_num_threads() if device.type == "cpu" else 0,
                       **final)
