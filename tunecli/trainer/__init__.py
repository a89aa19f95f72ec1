"""The PyTorch side of tunecli, reached through ``train(trainer, params, reporter)`` for one
trial and ``train_group`` for a fused group; ``fusable`` says which configurations may train
together.

``data`` holds the data sets (``csv_table`` a user's CSV), ``models`` the model builders
(``layers`` what they share), ``optim`` the optimizers and schedules, ``loop`` a lone
trial's training loop, ``group_loop`` a fused group's (``stacked``, ``stacked_optim``),
``epochs`` the end of an epoch and the step rules both loops share, and ``final`` the final
model. The names and the
hyperparameter table are ``tunecli.catalogue``'s.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tunecli.spec.models import TrainerSpec
    from tunecli.trainer.group_loop import MemberJob
    from tunecli.trainer.loop import Reporter, TrainResult

__all__ = ["train", "train_group"]


def train(trainer: TrainerSpec, params: dict[str, Any], reporter: Reporter, *, metric: str,
        direction: str = "maximize", base_dir: str | None = None,
        data_root: str | None = None, checkpoint: Path | None = None,
        final_epochs: int | None = None, stop_after: int | None = None) -> TrainResult:
    """Train one configuration (see ``tunecli.trainer.loop.train``; several runs in lockstep with
    ``trainer.repeats``/``cv``, see ``repeats``); torch is imported here, on the first call,
    because it is slow to import and ``report``/``validate`` never need it."""
    if final_epochs is None and (trainer.cv or trainer.repeats > 1):
        from tunecli.trainer.repeats import run_repeated

        return run_repeated(trainer, params, reporter, metric=metric, direction=direction,
                            base_dir=base_dir, data_root=data_root, stop_after=stop_after)
    from tunecli.trainer.loop import train as _train

    return _train(trainer, params, reporter, metric=metric, direction=direction,
                base_dir=base_dir, data_root=data_root, checkpoint=checkpoint,
                final_epochs=final_epochs, stop_after=stop_after)


def train_group(trainer: TrainerSpec, jobs: list[MemberJob], *, metric: str,
              direction: str = "maximize", base_dir: str | None = None,
              data_root: str | None = None,
              refill: Callable[[int], list[MemberJob]] | None = None,
              slots: int | None = None) -> list[TrainResult | BaseException]:
    """Train configurations of one structure together, refilled as members leave (see
    ``tunecli.trainer.group_loop``)."""
    from tunecli.trainer.group_loop import train_group as _run_group

    return _run_group(trainer, jobs, metric=metric, direction=direction, base_dir=base_dir,
                      data_root=data_root, refill=refill, slots=slots)

