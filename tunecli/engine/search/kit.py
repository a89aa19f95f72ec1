"""What every runner is given: the study's spec, where checkpoints go, a reporter per trial,
the budget's claims and limits, and how a finished training run is stored on its trial."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial

from tunecli import attrs
from tunecli.engine.search import outcome
from tunecli.engine.search.budget import Budget
from tunecli.engine.search.reporter import TrialReporter
from tunecli.engine.search.signals import StopSignals
from tunecli.engine.store.recovery import worker_id
from tunecli.engine.strategy import space
from tunecli.engine.strategy.pruners import Pruning
from tunecli.engine.tracking import Tracker

if TYPE_CHECKING:
    from tunecli.spec.models import StudySpec  # types only: the spec imports the registries

__all__ = ["Finish", "Member", "Refill", "RunnerKit", "one_by_one"]

# The contract's types (``runners``): a trial with its sampled parameters; how a runner says
# a trial ended; the call that gives a group more trials as members leave.
Member = tuple[optuna.Trial, dict[str, Any]]
Finish = Callable[[optuna.Trial, outcome.Ended], None]
Refill = Callable[[int], list[Member]]
Runner = Callable[["RunnerKit", list[Member], Finish, "Refill | None", int], None]


def one_by_one(train: Callable[[RunnerKit, optuna.Trial, dict[str, Any]], outcome.Ended]
               ) -> Runner:
    """A runner that trains its members one after another with ``train(kit, trial, params)``
    (its value(s); what stops a trial is raised, and ends it through the driver)."""
    def run(kit: RunnerKit, members: list[Member], finish: Finish, refill: Refill | None,
            slots: int) -> None:
        for trial, params in members:
            finish(trial, train(kit, trial, params))
    return run


class RunnerKit:
    """The search's side of a trial, shared by all runners of one run."""

    def __init__(self, spec: StudySpec, data_root: str | None, checkpoints: Path | None,
                 signals: StopSignals, budget: Budget, tracker: Tracker | None = None) -> None:
        self.spec = spec
        self.data_root = data_root
        self.checkpoints = checkpoints
        self.signals = signals
        self.budget = budget
        self.tracker = tracker
        self.pruning = Pruning(spec)
        self.worker = worker_id()
        # trial number -> the epochs it may train under budget.epochs (``budget.take_slot``)
        self.epoch_claims: dict[int, int] = {}
        # (what trains: "trial 7" or a fused group, epoch, latest metric) after each epoch
        self.on_epoch: Callable[[str, int, float | None], None] | None = None
        self._device: str | None = None
        self._scratch_folder: Path | None = None

    def reporter(self, trial: optuna.Trial, label: str = "") -> TrialReporter:
        """The one reporter a runner gives each trial's epochs to."""
        return TrialReporter(trial, self.pruning, self.signals, self.spec.metric,
                             tracker=self.tracker, on_epoch=self.on_epoch, label=label,
                             deadline=self.budget.deadline, last_epoch=self.last_epoch(trial))

    def last_epoch(self, trial: optuna.Trial) -> int:
        """The trial's last epoch: the budget's claim, or ``trainer.epochs``."""
        return self.epoch_claims.get(trial.number) or self.spec.trainer.epochs

    def checkpoint_for(self, trial: optuna.Trial | FrozenTrial) -> Path | None:
        """One checkpoint per configuration: a retry continues its original trial's file (your
        own code's trials: its folder)."""
        if self.checkpoints is None:
            return None
        suffix = "" if self.spec.trainer.kind != "builtin" else ".pt"
        return self.checkpoints / f"{_configuration(trial)}{suffix}"

    def trial_folder(self, trial: optuna.Trial) -> Path:
        """Your code's folder for one configuration (a retry continues in its original trial's
        folder): its checkpoint folder, or one in a temporary place where the run keeps none."""
        folder = self.checkpoint_for(trial) or self._scratch() / _configuration(trial)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def log_file(self, trial: optuna.Trial) -> Path:
        """Where a command trial's output goes: kept after the trial, whatever its checkpoints'
        fate (``--keep-checkpoints``)."""
        folder = (self.checkpoints or self._scratch()).parent / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"trial-{trial.number}.log"

    def _scratch(self) -> Path:
        """The checkpoint folder of a run that keeps none (made once, in a temporary place)."""
        if self._scratch_folder is None:
            import tempfile

            self._scratch_folder = Path(tempfile.mkdtemp(prefix="tunecli-trials-")) \
                / "checkpoints"
        return self._scratch_folder

    def device(self) -> str:
        """The device your code's trial is given: ``trainer.device``, ``auto`` resolved once."""
        if self._device is None:
            self._device = own_code_device(self.spec.trainer.device)
        return self._device

    def begin(self, trial: optuna.Trial) -> None:
        """A runner starts training ``trial`` (a tracker opens its run)."""
        if self.tracker is not None:
            self.tracker.trial_started(trial.number,
                                       space.trial_config(self.spec.space, trial.params))

    def finished(self, trial: optuna.Trial, ended: outcome.Ended) -> None:
        """A runner's trial ended (a tracker closes its run)."""
        if self.tracker is not None:
            state, reason = outcome.ended(ended)
            value = ended if not isinstance(ended, BaseException) else None
            self.tracker.trial_finished(trial.number, outcome.state_word(state, reason),
                                        value[0] if isinstance(value, list) else value)

    @staticmethod
    def store_result(trial: optuna.Trial, result: Any) -> None:
        """A finished training run's record (``trainer.loop.TrainResult``) on its trial."""
        trial.set_user_attr(attrs.HISTORY, result.history)
        trial.set_user_attr(attrs.BEST_EPOCH, result.best_epoch)
        trial.set_user_attr(attrs.EPOCHS_RUN, result.epochs_run)
        trial.set_user_attr(attrs.PARAMS_COUNT, result.params_count)
        trial.set_user_attr(attrs.DEVICE, result.device)
        if result.threads:
            trial.set_user_attr(attrs.THREADS, result.threads)
        trial.set_user_attr(attrs.SAMPLES_PER_SECOND, round(result.samples_per_second, 1))
        trial.set_user_attr(attrs.TRAIN_SECONDS, round(result.train_seconds, 3))
        if result.spread:  # trainer.repeats / cv: every run's value and their spread
            trial.set_user_attr(attrs.SPREAD, result.spread)


def _configuration(trial: optuna.Trial | FrozenTrial) -> str:
    """A configuration's name on disk: its first trial's (a retry continues its files)."""
    return f"trial-{trial.user_attrs.get(attrs.RETRY_OF, trial.number)}"


def own_code_device(wanted: str) -> str:
    """``trainer.device`` for your own code: ``auto`` is cuda when this machine shows a GPU,
    asked of the driver's files rather than torch (a command's program may not use torch,
    and importing it costs a second of every start), unless torch is already loaded."""
    import os
    import sys

    if wanted != "auto":
        return wanted
    if "torch" in sys.modules:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if os.environ.get("CUDA_VISIBLE_DEVICES", "0").strip() in ("", "-1"):
        return "cpu"
    gpus = Path("/proc/driver/nvidia/gpus")
    shown = (gpus.is_dir() and any(gpus.iterdir())) or Path("/dev/kfd").exists()  # ROCm
    return "cuda" if shown else "cpu"
