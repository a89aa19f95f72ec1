"""The lone runner: the built-in trainer trains one trial (``trainer.train``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import optuna

from tunecli import attrs
from tunecli.engine.strategy import objectives

if TYPE_CHECKING:
    from tunecli.engine.search.kit import RunnerKit

__all__ = ["train"]


def train(kit: RunnerKit, trial: optuna.Trial, params: dict[str, Any]) -> float | list[float]:
    """Train one trial alone: its value(s); what stops it is raised."""
    from tunecli import trainer  # torch: imported once a trial trains

    spec = kit.spec
    reporter = kit.reporter(trial, f"trial {trial.number}")
    try:
        with kit.signals.interruptible():
            measures = objectives.before_training(trial, spec, params, kit.data_root)
            reporter.measures = measures
            result = trainer.train(spec.trainer, params, reporter, metric=spec.metric,
                                 direction=spec.direction, base_dir=spec.base_dir,
                                 data_root=kit.data_root, checkpoint=kit.checkpoint_for(trial),
                                 stop_after=kit.epoch_claims.get(trial.number))
    finally:
        if reporter.history:
            trial.set_user_attr(attrs.HISTORY, reporter.history)
    kit.store_result(trial, result)
    return objectives.values_after_training(trial, spec, float(result.value), measures,
                                            result.train_seconds)
