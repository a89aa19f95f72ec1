"""Fused trials change nothing but speed: on the CPU in fp32 each member's per-epoch metrics
equal those of the same configuration trained alone; members leave a group alone (pruned,
failed, stopped early) and their checkpoints continue alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.conftest import Collect
from tunecli.errors import TrialCut, TrialFailed
from tunecli.spec import TrainerSpec
from tunecli.trainer import fusable, group_loop, loop
from tunecli.trainer.group_loop import MemberJob

COMPARED = ("val_loss", "val_accuracy", "train_loss", "lr")



def trainer(data: str = "synthetic", epochs: int = 4, **kw: Any) -> TrainerSpec:
    task = "regression" if data == "regression" else "classification"
    dataset: Any = (data if data == "digits" else
                    {"name": f"synthetic-{task}", "n_samples": 400, "n_features": 10})
    return TrainerSpec.model_validate({"dataset": dataset, "epochs": epochs, **kw})


def lone(spec: TrainerSpec, params: dict[str, Any], metric: str = "val_accuracy",
         **kw: Any) -> list[dict[str, float]]:
    reporter = Collect()
    loop.train(spec, params, reporter, metric=metric, **kw)
    return reporter.metrics


def assert_same(fused_metrics: list[dict[str, float]], lone_metrics: list[dict[str, float]],
                keys: tuple[str, ...] = COMPARED) -> None:
    assert len(fused_metrics) == len(lone_metrics)
    for epoch, (a, b) in enumerate(zip(fused_metrics, lone_metrics, strict=True), start=1):
        for key in keys:
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), (epoch, key, a, b)


# Members differ in everything a member may: width (padded), lr, momentum, betas, weight
# decay, L1, dropout, clipping, the schedule and its settings, label smoothing, the
# initialisation.
MEMBERS = [
    {"width": 16, "lr": 0.01, "dropout": 0.2, "l1": 1e-4, "weight_decay": 1e-3,
     "momentum": 0.9, "beta1": 0.8, "init": "kaiming", "label_smoothing": 0.1},
    {"width": 40, "lr": 0.003, "schedule": "cosine", "momentum": 0.0, "beta2": 0.99},
    {"width": 23, "lr": 0.001, "grad_clip": 0.5, "schedule": "step", "step_size": 1,
     "gamma": 0.5, "warmup_epochs": 1, "momentum": 0.5, "dropout": 0.1, "init": "orthogonal",
     "label_smoothing": 0.2},
    {"width": 8, "lr": 0.005, "schedule": "plateau", "plateau_patience": 0, "gamma": 0.5,
     "weight_decay": 1e-2, "init": "xavier"},
]


@pytest.mark.parametrize("optimizer", fusable.FUSABLE_OPTIMIZERS)
@pytest.mark.parametrize("batch_norm", [False, True])
def test_members_equal_lone_trials(optimizer: str, batch_norm: bool) -> None:
    spec = trainer()
    shared = {"depth": 2, "batch_size": 32, "optimizer": optimizer, "batch_norm": batch_norm,
              "nesterov": optimizer == "sgd"}
    # RMSprop's steps are about ten times Adam's: the same rates would diverge.
    scale = 0.1 if optimizer == "rmsprop" else 1.0
    configs = [{**shared, **member, "lr": member["lr"] * scale} for member in MEMBERS]
    jobs = [MemberJob(config, Collect()) for config in configs]
    outcomes = group_loop.train_group(spec, jobs, metric="val_accuracy")
    for job, outcome, config in zip(jobs, outcomes, configs, strict=True):
        assert isinstance(outcome, loop.TrainResult), outcome
        assert_same(job.reporter.metrics, lone(spec, config))  # type: ignore[attr-defined]
        assert outcome.epochs_run == 4


@pytest.mark.parametrize("activation", ["gelu", "tanh", "leaky_relu"])
def test_digits_widths_and_depths_without_batch_norm(activation: str) -> None:
    """The real default data set, depth 1 and 3, padded widths, dropout: still equal."""
    spec = trainer("digits", epochs=3)
    for depth in (1, 3):
        configs = [{"depth": depth, "batch_size": 64, "activation": activation,
                    "width": width, "dropout": dropout, "lr": lr}
                   for width, dropout, lr in ((32, 0.3, 3e-3), (100, 0.0, 1e-3),
                                              (57, 0.1, 2e-3))]
        jobs = [MemberJob(c, Collect()) for c in configs]
        group_loop.train_group(spec, jobs, metric="val_accuracy")
        for job, config in zip(jobs, configs, strict=True):
            assert_same(job.reporter.metrics, lone(spec, config))  # type: ignore[attr-defined]


def test_regression_members_equal_lone_trials() -> None:
    spec = trainer("regression")
    configs = [{"width": w, "lr": lr, "depth": 1} for w, lr in ((16, 0.01), (48, 0.002))]
    jobs = [MemberJob(c, Collect()) for c in configs]
    group_loop.train_group(spec, jobs, metric="val_rmse", direction="minimize")
    for job, config in zip(jobs, configs, strict=True):
        assert_same(job.reporter.metrics, lone(spec, config, metric="val_rmse",  # type: ignore[attr-defined]
                                               direction="minimize"),
                    ("val_rmse", "val_r2", "train_loss"))


def test_a_pruned_member_leaves_and_the_rest_go_on() -> None:
    spec = trainer()
    configs = [{"width": w, "lr": 0.01} for w in (16, 24, 32)]
    jobs = [MemberJob(configs[0], Collect()), MemberJob(configs[1], Collect(2)),
            MemberJob(configs[2], Collect())]
    outcomes = group_loop.train_group(spec, jobs, metric="val_accuracy")
    assert isinstance(outcomes[1], RuntimeError) and "epoch 2" in str(outcomes[1])
    assert len(jobs[1].reporter.metrics) == 2  # type: ignore[attr-defined]
    for i in (0, 2):
        assert isinstance(outcomes[i], loop.TrainResult) and outcomes[i].epochs_run == 4  # type: ignore[union-attr]
        assert_same(jobs[i].reporter.metrics, lone(spec, configs[i]))  # type: ignore[attr-defined]


def test_a_diverging_member_fails_alone() -> None:
    spec = trainer()
    configs = [{"width": 16, "lr": 0.01, "optimizer": "sgd"},
               {"width": 16, "lr": 1e30, "optimizer": "sgd"},
               {"width": 32, "lr": 0.02, "optimizer": "sgd"}]
    jobs = [MemberJob(c, Collect()) for c in configs]
    outcomes = group_loop.train_group(spec, jobs, metric="val_accuracy")
    assert isinstance(outcomes[1], TrialFailed)
    assert "training loss became" in outcomes[1].reason
    for i in (0, 2):
        assert isinstance(outcomes[i], loop.TrainResult)
        assert_same(jobs[i].reporter.metrics, lone(spec, configs[i]))  # type: ignore[attr-defined]


def refill_from(waiting: list[MemberJob]) -> Any:
    """A refill that hands out ``waiting`` jobs as slots free up, recording each call."""
    calls: list[int] = []

    def refill(free: int) -> list[MemberJob]:
        calls.append(free)
        taken = waiting[:free]
        del waiting[:free]
        return taken

    refill.calls = calls  # type: ignore[attr-defined]
    return refill


@pytest.mark.parametrize("optimizer", fusable.FUSABLE_OPTIMIZERS)
@pytest.mark.parametrize("batch_norm", [False, True])
def test_members_that_join_later_equal_lone_trials(optimizer: str, batch_norm: bool) -> None:
    """A pruned member's slot is refilled at the epoch boundary: the newcomers (one wider than
    the group, so the padding grows) start at their epoch 1 with their own batch order, their
    own optimizer step count and batch-norm statistics, while the others go on."""
    spec = trainer()
    shared = {"depth": 2, "batch_size": 32, "optimizer": optimizer, "batch_norm": batch_norm,
              "nesterov": optimizer == "sgd"}
    scale = 0.1 if optimizer == "rmsprop" else 1.0
    configs = [{**shared, **member, "lr": member["lr"] * scale} for member in MEMBERS]
    jobs = [MemberJob(configs[0], Collect(1)), MemberJob(configs[3], Collect())]
    later = [MemberJob(configs[1], Collect()), MemberJob(configs[2], Collect())]
    refill = refill_from(list(later))
    outcomes = group_loop.train_group(spec, jobs, metric="val_accuracy", refill=refill, slots=3)
    assert refill.calls[0] == 2  # after epoch 1: one slot never filled, one freed by the prune
    assert jobs[2:] == later and len(outcomes) == 4
    assert len(jobs[0].reporter.metrics) == 1  # type: ignore[attr-defined]
    for job in jobs[1:]:
        assert isinstance(job.outcome, loop.TrainResult) and job.outcome.epochs_run == 4
        assert_same(job.reporter.metrics, lone(spec, job.params))  # type: ignore[attr-defined]
    fused_members = [m["fused_members"] for m in jobs[1].reporter.metrics]  # type: ignore[attr-defined]
    assert fused_members == [2, 3, 3, 3]


def test_a_group_emptied_by_pruning_is_refilled_and_augments_per_member() -> None:
    """Digits with random crops and flips (drawn from each member's own generator): everyone
    leaves after epoch 1, and the newcomers start a fresh stacked model."""
    spec = trainer("digits", epochs=2)
    shared = {"depth": 1, "batch_size": 128, "crop": 1, "flip": True}
    configs = [{**shared, "width": w, "lr": lr} for w, lr in ((32, 3e-3), (48, 1e-3),
                                                                (40, 2e-3))]
    jobs = [MemberJob(configs[0], Collect(1))]
    refill = refill_from([MemberJob(c, Collect()) for c in configs[1:]])
    group_loop.train_group(spec, jobs, metric="val_accuracy", refill=refill, slots=2)
    assert len(jobs) == 3
    for job in jobs[1:]:
        assert_same(job.reporter.metrics, lone(spec, job.params))  # type: ignore[attr-defined]


def test_members_of_two_cohorts_with_crops_equal_lone_trials() -> None:
    spec = trainer("digits", epochs=3)
    shared = {"depth": 2, "batch_size": 64, "crop": 1, "flip": True, "dropout": 0.2}
    configs = [{**shared, "width": w, "lr": lr} for w, lr in ((32, 3e-3), (24, 1e-3),
                                                                (40, 2e-3))]
    jobs = [MemberJob(configs[0], Collect()), MemberJob(configs[1], Collect(1))]
    refill = refill_from([MemberJob(configs[2], Collect())])
    group_loop.train_group(spec, jobs, metric="val_accuracy", refill=refill)
    for job in (jobs[0], jobs[2]):
        assert_same(job.reporter.metrics, lone(spec, job.params))  # type: ignore[attr-defined]


# CNN members differ in channels (padded) and classifier width, and in everything a member may.
CNN_MEMBERS = [
    {"channels": 4, "classifier_width": 16, "lr": 0.01, "dropout": 0.2, "l1": 1e-4,
     "weight_decay": 1e-3, "momentum": 0.9, "init": "kaiming"},
    {"channels": 6, "classifier_width": 24, "lr": 0.003, "schedule": "cosine", "momentum": 0.0,
     "label_smoothing": 0.15},
    {"channels": 3, "classifier_width": 12, "lr": 0.005, "grad_clip": 0.5, "dropout": 0.1,
     "momentum": 0.5},
]


@pytest.mark.parametrize("optimizer", fusable.FUSABLE_OPTIMIZERS)
@pytest.mark.parametrize("batch_norm", [False, True])
def test_cnn_members_equal_lone_trials(optimizer: str, batch_norm: bool) -> None:
    """The built-in cnn stacked with grouped convolutions: padded channels, per-channel batch
    norm, a member pruned after epoch 1 and a newcomer (the widest) joining then."""
    spec = trainer("digits", epochs=3, model="cnn")
    shared = {"conv_blocks": 2, "kernel_size": 3, "batch_size": 64, "optimizer": optimizer,
              "batch_norm": batch_norm, "nesterov": optimizer == "sgd"}
    scale = 0.1 if optimizer == "rmsprop" else 1.0
    configs = [{**shared, **member, "lr": member["lr"] * scale} for member in CNN_MEMBERS]
    jobs = [MemberJob(configs[0], Collect(1)), MemberJob(configs[2], Collect())]
    refill = refill_from([MemberJob(configs[1], Collect())])
    group_loop.train_group(spec, jobs, metric="val_accuracy", refill=refill)
    assert len(jobs) == 3 and len(jobs[0].reporter.metrics) == 1  # type: ignore[attr-defined]
    for job in jobs:
        alone = lone(spec, job.params)
        assert_same(job.reporter.metrics, alone[:len(job.reporter.metrics)])  # type: ignore[attr-defined]
    assert [len(job.reporter.metrics) for job in jobs] == [1, 3, 3]  # type: ignore[attr-defined]


USER_MODEL = str(Path(__file__).parent / "user_models.py")
# A user model's members share its own settings (hidden) and differ in what the loop applies.
USER_MEMBERS = [
    {"lr": 0.01, "l1": 1e-4, "weight_decay": 1e-3, "momentum": 0.9, "beta1": 0.8},
    {"lr": 0.003, "schedule": "cosine", "momentum": 0.0, "beta2": 0.99, "label_smoothing": 0.1},
    {"lr": 0.005, "grad_clip": 0.5, "schedule": "step", "step_size": 1, "gamma": 0.5,
     "momentum": 0.5},
]


@pytest.mark.parametrize("optimizer", fusable.FUSABLE_OPTIMIZERS)
def test_user_model_members_equal_lone_trials(optimizer: str) -> None:
    """A user model fused through torch.func (batch-norm buffers stacked and updated per
    member): a member pruned after epoch 1 and a newcomer joining then still equal their
    lone trials. Synthetic data, as the built-in batch-norm tests: with batch norm, a digits
    pixel that is constant within a batch gets a gradient that is zero up to float rounding,
    which Adam turns into steps of about lr, so its path would follow rounding noise."""
    spec = trainer(epochs=3, model=f"{USER_MODEL}:build", fuse=4)
    shared = {"hidden": 24, "batch_size": 64, "optimizer": optimizer,
              "nesterov": optimizer == "sgd"}
    scale = 0.1 if optimizer == "rmsprop" else 1.0
    configs = [{**shared, **member, "lr": member["lr"] * scale} for member in USER_MEMBERS]
    assert fusable.why_not_fused(spec, configs[0]) is None
    assert fusable.why_not_functional(spec, configs[0]) is None
    jobs = [MemberJob(configs[0], Collect(1)), MemberJob(configs[2], Collect())]
    refill = refill_from([MemberJob(configs[1], Collect())])
    group_loop.train_group(spec, jobs, metric="val_accuracy", refill=refill)
    assert [len(job.reporter.metrics) for job in jobs] == [1, 3, 3]  # type: ignore[attr-defined]
    for job in jobs:
        alone = lone(spec, job.params)
        assert_same(job.reporter.metrics, alone[:len(job.reporter.metrics)])  # type: ignore[attr-defined]


def test_user_models_torch_func_cannot_run_are_named_with_the_reason() -> None:
    def why(name: str, fuse: Any = 4) -> str | None:
        spec = trainer("digits", model=f"{USER_MODEL}:{name}", fuse=fuse)
        return fusable.why_not_fused(spec, {}) or fusable.why_not_functional(spec, {})

    assert why("build") is None
    assert "auto does not fuse" in str(why("build", "auto"))
    assert "draws random numbers" in str(why("with_dropout"))
    assert "cannot be fused through torch.func" in str(why("itemising"))
    assert "parameter spare.weight takes no part" in str(why("unused_layer"))
    spec = trainer("digits", model=f"{USER_MODEL}:build", fuse=4)
    assert fusable.group_key(spec, {"hidden": 8, "lr": 0.1}) == \
        fusable.group_key(spec, {"hidden": 8, "lr": 0.2, "schedule": "cosine"})
    assert fusable.group_key(spec, {"hidden": 8}) != fusable.group_key(spec, {"hidden": 9})


def test_early_stopping_is_per_member() -> None:
    spec = trainer(epochs=8, early_stopping=1)
    configs = [{"width": 16, "lr": 0.05, "optimizer": "sgd"},
               {"width": 16, "lr": 3e-3, "optimizer": "sgd"}]
    jobs = [MemberJob(c, Collect()) for c in configs]
    outcomes = group_loop.train_group(spec, jobs, metric="val_loss", direction="minimize")
    for job, outcome, config in zip(jobs, outcomes, configs, strict=True):
        alone = lone(spec, config, metric="val_loss", direction="minimize")
        assert_same(job.reporter.metrics, alone)  # type: ignore[attr-defined]
        assert isinstance(outcome, loop.TrainResult)
        assert outcome.epochs_run == len(alone)


USER_MODEL = str(Path(__file__).parent / "user_models.py")
CHECKPOINTED = {  # model -> (trainer settings, members)
    "mlp": ({}, [{"width": 16, "lr": 0.01, "beta1": 0.8, "schedule": "cosine", "batch_norm": True},
                 {"width": 24, "lr": 0.003, "weight_decay": 0.01, "batch_norm": True},
                 {"width": 8, "lr": 0.02, "schedule": "plateau", "batch_norm": True}]),
    "cnn": ({"data": "digits", "epochs": 3, "model": "cnn"},
            [{"channels": c, "classifier_width": 16, "lr": 3e-3, "kernel_size": 3,
              "conv_blocks": 2, "batch_size": 128} for c in (3, 5)]),
    "user": ({"model": f"{USER_MODEL}:build", "fuse": 2},
             [{"hidden": 12, "lr": lr, "schedule": "cosine"} for lr in (3e-3, 1e-2)]),
}


@pytest.mark.parametrize("model", sorted(CHECKPOINTED))
def test_a_member_checkpoint_continues_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            model: str) -> None:
    """A group stopped after epoch 2 (as by Ctrl-C); each member's retry continues alone from
    its checkpoint (weights, batch-norm statistics, optimizer state: the lone format) and ends
    where an uninterrupted lone trial ends."""
    monkeypatch.setattr(group_loop, "CHECKPOINT_SECONDS", 0.0)  # save after every epoch
    settings, configs = CHECKPOINTED[model]
    spec = trainer(**settings)

    class StopAt2(Collect):
        def report(self, epoch: int, metrics: dict[str, float]) -> None:
            super().report(epoch, metrics)
            if epoch == 2 and self is jobs[-1].reporter:
                raise KeyboardInterrupt

    jobs = [MemberJob(c, StopAt2(), tmp_path / f"trial-{i}.pt")
            for i, c in enumerate(configs)]
    with pytest.raises(KeyboardInterrupt):
        group_loop.train_group(spec, jobs, metric="val_accuracy")
    for job, config in zip(jobs, configs, strict=True):
        assert torch.load(job.checkpoint, weights_only=True)["epoch"] == 2  # type: ignore[arg-type]
        resumed = lone(spec, config, checkpoint=job.checkpoint)
        assert_same(resumed, lone(spec, config)[2:])


def test_a_group_shares_its_structure() -> None:
    with pytest.raises(ValueError, match="share"):
        group_loop.train_group(trainer(), [MemberJob({"depth": 1}, Collect()),
                                    MemberJob({"depth": 2}, Collect())],
                        metric="val_accuracy")


def test_checkpoints_are_written_when_members_finish(tmp_path: Path) -> None:
    """Between finishes a group saves at most every CHECKPOINT_SECONDS; a finished member's
    checkpoint holds its last epoch, as a lone trial's does."""
    spec = trainer(epochs=3)
    jobs = [MemberJob({"width": w}, Collect(), tmp_path / f"{w}.pt") for w in (8, 16)]
    group_loop.train_group(spec, jobs, metric="val_accuracy")
    for job in jobs:
        assert torch.load(job.checkpoint, weights_only=True)["epoch"] == 3  # type: ignore[arg-type]


def test_why_not_fused_names_the_reason() -> None:
    assert fusable.why_not_fused(trainer(), {"optimizer": "adam"}) is None
    assert "lstm" in str(fusable.why_not_fused(trainer(model="lstm"), {}))
    assert "data_shares" in str(fusable.why_not_fused(trainer(data_shares=[0.5]), {}))
    assert fusable.why_not_fused(trainer(model="cnn"), {}) is None
    assert "adagrad" in str(fusable.why_not_fused(trainer(), {"optimizer": "adagrad"}))
    assert "adabound" in str(fusable.why_not_fused(trainer(), {"optimizer": "adabound"}))
    assert "amsgrad" in str(fusable.why_not_fused(trainer(), {"amsgrad": True}))
    assert "mixup" in str(fusable.why_not_fused(trainer(), {"mixup": 0.2}))
    assert fusable.why_not_fused(trainer(), {"label_smoothing": 0.1}) is None
    assert fusable.group_key(trainer(), {"label_smoothing": 0.1}) == \
        fusable.group_key(trainer(), {"label_smoothing": 0.0})
    assert fusable.group_key(trainer(), {"lr": 0.1, "width": 3}) == \
        fusable.group_key(trainer(), {"lr": 0.2, "width": 9})
    assert fusable.group_key(trainer(), {"depth": 1}) != fusable.group_key(trainer(), {"depth": 2})


def test_the_widest_member_leaving_shrinks_the_group() -> None:
    """Pruning the widest member cuts the padding; the others go on unchanged."""
    spec = trainer(epochs=4)
    configs = [{"width": w, "lr": 0.01, "dropout": 0.1, "batch_norm": True, "depth": 2}
               for w in (12, 64, 20)]
    jobs = [MemberJob(configs[0], Collect()), MemberJob(configs[1], Collect(1)),
            MemberJob(configs[2], Collect())]
    group_loop.train_group(spec, jobs, metric="val_accuracy")
    for i in (0, 2):
        assert_same(jobs[i].reporter.metrics, lone(spec, configs[i]))  # type: ignore[attr-defined]


def test_out_of_memory_splits_the_group_and_reports_no_epoch_twice(monkeypatch) -> None:
    """A group of 4 runs out of memory in its 2nd epoch: halves start again, epoch 1 is not
    reported twice, every member ends once, and its metrics still equal a lone run's."""
    spec = trainer(epochs=3)
    real = group_loop._train_epoch
    seen = {"epochs of four": 0}

    def short_of_memory(spec_: Any, stacked: Any, *rest: Any) -> list[float]:
        if stacked.k == 4:
            seen["epochs of four"] += 1
            if seen["epochs of four"] == 2:
                raise torch.OutOfMemoryError("test: out of memory")
        return real(spec_, stacked, *rest)

    monkeypatch.setattr(group_loop, "_train_epoch", short_of_memory)
    configs = [{"width": w, "lr": 0.01} for w in (8, 16, 24, 32)]
    ended: list[Any] = []
    jobs = [MemberJob(c, Collect(), on_end=ended.append) for c in configs]
    outcomes = group_loop.train_group(spec, jobs, metric="val_accuracy")
    assert len(ended) == 4 and all(isinstance(o, loop.TrainResult) for o in outcomes)
    for job, config in zip(jobs, configs, strict=True):
        assert_same(job.reporter.metrics, lone(spec, config))  # type: ignore[attr-defined]


def test_a_member_out_of_memory_alone_fails_alone(monkeypatch) -> None:
    def always(*args: Any) -> list[float]:
        raise torch.OutOfMemoryError("test: out of memory")

    monkeypatch.setattr(group_loop, "_train_epoch", always)
    jobs = [MemberJob({"width": w}, Collect()) for w in (8, 16)]
    outcomes = group_loop.train_group(trainer(), jobs, metric="val_accuracy")
    assert all(isinstance(o, TrialFailed) and "out of memory" in o.reason for o in outcomes)


class _CutAt(Collect):
    """The run's time limit, as the engine's reporter raises it after epoch ``at``."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def report(self, epoch: int, metrics: dict[str, float]) -> None:
        super().report(epoch, metrics)
        if epoch == self.at:
            raise TrialCut(epoch)


def test_members_cut_by_the_time_limit_keep_a_checkpoint_of_that_epoch(tmp_path: Path) -> None:
    """Between the group's periodic saves, a member stopped by the time limit still saves the
    epoch it stored, so its retry continues from exactly there."""
    spec = trainer(epochs=6)
    jobs = [MemberJob(c, _CutAt(2), checkpoint=tmp_path / f"m{i}.pt")
            for i, c in enumerate(MEMBERS[:3])]
    outcomes = group_loop.train_group(spec, jobs, metric="val_accuracy")
    for job, outcome in zip(jobs, outcomes, strict=True):
        assert isinstance(outcome, TrialCut) and "after epoch 2" in outcome.reason
        assert torch.load(job.checkpoint, weights_only=True)["epoch"] == 2  # type: ignore[arg-type]
