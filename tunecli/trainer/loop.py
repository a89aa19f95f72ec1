"""The training loop: one configuration in, per-epoch metrics out, a final value back.

Batches come from a shuffled index over tensors already on the device (no DataLoader), the
loss is checked once per epoch (one host sync, not one per batch), and every epoch is reported
to the ``Reporter``, which may stop the trial (pruning) by raising.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from tunecli.errors import SpecError
from tunecli.trainer import data as data_sets
from tunecli.trainer import epochs as epoch_end
from tunecli.trainer import models, threads
from tunecli.trainer.augment import Augmentation
from tunecli.trainer.epochs import Progress, Reporter, TrainResult
from tunecli.trainer.metrics import evaluate
from tunecli.trainer.optim import Schedule, make_optimizer

if TYPE_CHECKING:
    from tunecli.spec.models import TrainerSpec  # types only: the spec imports the registries

__all__ = [
    "Progress",
    "Reporter",
    "TrainResult",
    "autocast_for",
    "prepare",
    "resolve_device",
    "save_checkpoint",
    "train",
]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SpecError(f"device {name!r} was asked for but CUDA is not available",
                        path="trainer.device", fix="Use device: auto or cpu.")
    return torch.device(name)


def _l1_penalty(model: nn.Module) -> torch.Tensor:
    # Weights only: penalising biases and norm scales is not what L1 regularisation means.
    return sum(p.abs().sum() for n, p in model.named_parameters() if p.ndim > 1)  # type: ignore


def _save_atomically(state: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def prepare(trainer: TrainerSpec, metric: str, base_dir: str | None,
            data_root: str | None, fold: tuple[int, int] | None = None
            ) -> tuple[torch.device, data_sets.DataBundle]:
    """The device and the data (cached per process), checked against the metric."""
    device = resolve_device(trainer.device)
    root = data_sets.resolve_data_root(trainer.data_root, base_dir, data_root)
    bundle = data_sets.load(trainer.dataset, root, trainer.download, device, base_dir, fold)
    allowed = (data_sets.CLASSIFICATION_METRICS if bundle.task == "classification"
               else data_sets.REGRESSION_METRICS)
    if metric not in allowed:
        raise SpecError(f"metric '{metric}' is not reported for a {bundle.task} data set",
                        path="metric", fix=f"Use one of: {', '.join(allowed)}.")
    return device, bundle


@dataclass
class _Setup:
    """Everything one configuration trains with, built once before its first epoch."""

    bundle: data_sets.DataBundle
    device: torch.device
    config: dict[str, Any]
    model: nn.Module
    forward: Any                      # the model, or its torch.compile'd wrapper
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    generator: torch.Generator
    autocast: Any                     # () -> context manager
    loss_fn: Any
    x_fit: torch.Tensor
    y_fit: torch.Tensor
    batch_size: int
    n_params: int
    step_work: float                  # multiply-adds of a step on the CPU (trainer/threads)


def train(trainer: TrainerSpec, params: dict[str, Any], reporter: Reporter, *, metric: str,
        direction: str = "maximize", base_dir: str | None = None,
        data_root: str | None = None, checkpoint: Path | None = None,
        final_epochs: int | None = None, stop_after: int | None = None) -> TrainResult:
    """Train one configuration; report every epoch; return the best epoch's metric.

    ``checkpoint``: a file where model and optimizer state are saved after each epoch; when it
    already exists the trial continues after its last finished epoch.
    ``final_epochs``: final training instead of a trial: train that many epochs on training +
    validation data (nothing is left to pick an epoch or stop early with), then evaluate once
    on the test part (``test_metrics``); epochs report only their training loss.
    ``stop_after``: end after this epoch (the compute budget's claim); the schedule still runs
    over ``epochs``, so the trial is the same one, cut short.
    Raises ``TrialFailed`` for a NaN/infinite loss or an out-of-memory error.
    """
    steps = training(trainer, params, metric=metric, direction=direction, base_dir=base_dir,
                     data_root=data_root, checkpoint=checkpoint, final_epochs=final_epochs,
                     stop_after=stop_after)
    while True:
        try:
            epoch, metrics = next(steps)
        except StopIteration as done:
            result: TrainResult = done.value
            return result
        reporter.report(epoch, metrics)


def training(trainer: TrainerSpec, params: dict[str, Any], *, metric: str,
             direction: str = "maximize", base_dir: str | None = None,
             data_root: str | None = None, checkpoint: Path | None = None,
             final_epochs: int | None = None, stop_after: int | None = None,
             early_stopping: bool = True, fold: tuple[int, int] | None = None
             ) -> Generator[tuple[int, dict[str, float]], bool | None, TrainResult]:
    """``run`` one epoch at a time: yields (epoch, metrics) after each epoch, returns the
    result. Several of these can advance in lockstep (``repeated``). ``fold``: (f, K), train on
    the other folds of the training + validation data and validate on fold f."""
    final = final_epochs is not None
    epochs = final_epochs if final_epochs is not None else trainer.epochs
    # Final training has no validation metric: a plateau schedule watches the training loss.
    minimize = direction == "minimize" or final
    setup = _build(trainer, params, metric, base_dir, data_root, final, epochs, minimize, fold)
    progress = _restore(checkpoint, setup)
    bundle, device = setup.bundle, setup.device
    target_scale = (bundle.target_mean, bundle.target_std)
    stopped_early = False
    started = time.perf_counter()
    seen = 0
    patience = None if final or not early_stopping else trainer.early_stopping
    ranked_by = "train_loss" if final else metric
    try:
        last = epoch_end.last_epoch(epochs, stop_after)
        for epoch in range(progress.next_epoch, last + 1):
            metrics, examples = _epoch(setup, trainer, epoch, final)
            seen += examples
            progress.record(epoch, metrics, ranked_by, metrics[ranked_by], minimize)
            setup.schedule.step(epoch, metrics[ranked_by])
            if checkpoint is not None:
                _save(checkpoint, setup, progress)
            stop = yield epoch, metrics  # a driver of several runs may send True: stop now
            if stop or progress.stalled(patience):
                stopped_early = True
                break
    except torch.OutOfMemoryError:
        batch_size, n_params = setup.batch_size, setup.n_params
        del setup
        raise epoch_end.out_of_memory(device, batch_size, n_params) from None
    elapsed = time.perf_counter() - started
    test_metrics = evaluate(setup.model, bundle.x_test, bundle.y_test, bundle.task,
                            bundle.n_outputs, trainer.eval_batch_size, setup.autocast,
                            prefix="test", target_scale=target_scale) if final else {}
    return epoch_end.result(progress, params_count=setup.n_params, device=device, seen=seen,
                            elapsed=elapsed, stopped_early=stopped_early, config=setup.config,
                            test_metrics=test_metrics,
                            state_dict={k: v.detach().cpu()
                                        for k, v in setup.model.state_dict().items()})


def _epoch(setup: _Setup, trainer: TrainerSpec, epoch: int, final: bool
           ) -> tuple[dict[str, float], int]:
    """Train one epoch and evaluate it: its metrics and the examples it trained on."""
    bundle = setup.bundle
    threads.use(trainer.threads, setup.device, setup.step_work)
    examples = epoch_end.examples_in_epoch(len(setup.x_fit), trainer.data_shares, epoch)
    epoch_start = time.perf_counter()
    train_loss = _train_epoch(setup, trainer, epoch, examples)
    scores = {} if final else evaluate(setup.model, bundle.x_val, bundle.y_val, bundle.task,
                                       bundle.n_outputs, trainer.eval_batch_size,
                                       setup.autocast,
                                       target_scale=(bundle.target_mean, bundle.target_std))
    if setup.device.type == "cuda":
        torch.cuda.synchronize(setup.device)
    return epoch_end.epoch_metrics(scores, train_loss, time.perf_counter() - epoch_start,
                                   examples, setup.optimizer.param_groups[0]["lr"]), examples


def autocast_for(trainer: TrainerSpec, device: torch.device) -> Any:
    """() -> the context each forward pass runs in: bf16 autocast where asked, else nothing."""
    use_bf16 = trainer.precision == "bf16" or (trainer.precision == "auto"
                                               and device.type == "cuda")

    def autocast() -> Any:
        if not use_bf16:  # entering a disabled autocast still costs time on every batch
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return autocast


def _build(trainer: TrainerSpec, params: dict[str, Any], metric: str, base_dir: str | None,
           data_root: str | None, final: bool, epochs: int, minimize: bool,
           fold: tuple[int, int] | None = None) -> _Setup:
    """Data, model, optimizer, schedule and random state for one configuration."""
    device, bundle = prepare(trainer, metric, base_dir, data_root, fold)
    if final and len(bundle.x_test) == 0:
        raise SpecError("the data set has no test part to evaluate the final model on",
                        path="trainer.dataset.test_fraction",
                        fix="Set test_fraction above 0, e.g. 0.2.")
    x_fit, y_fit = ((torch.cat([bundle.x_train, bundle.x_val]),
                     torch.cat([bundle.y_train, bundle.y_val])) if final
                    else (bundle.x_train, bundle.y_train))
    config = models.full_config(trainer.model, params)
    torch.manual_seed(trainer.seed)
    generator = torch.Generator(device=device).manual_seed(trainer.seed)
    model = models.build(trainer.model, config, bundle.input_shape, bundle.n_outputs,
                         base_dir).to(device)
    optimizer = make_optimizer(config, model.parameters(), device)
    loss_fn = nn.functional.cross_entropy if bundle.task == "classification" \
        else epoch_end.squared_error
    batch_size = max(1, int(config["batch_size"]))
    return _Setup(bundle, device, config, model,
                  torch.compile(model) if trainer.compile else model, optimizer,
                  Schedule(config, optimizer, epochs, minimize), generator,
                  autocast_for(trainer, device), loss_fn,
                  x_fit, y_fit, batch_size, models.count_parameters(model),
                  threads.step_work(model, bundle.input_shape, batch_size, device))


def _restore(checkpoint: Path | None, setup: _Setup) -> Progress:
    """A retried trial continues after its last finished epoch; a new one starts at 1."""
    if checkpoint is None or not checkpoint.exists():
        return Progress()
    state = torch.load(checkpoint, map_location=setup.device, weights_only=True)
    setup.model.load_state_dict(state["model"])
    setup.optimizer.load_state_dict(state["optimizer"])
    setup.schedule.load_state_dict(state["schedule"])
    setup.generator.set_state(state["generator"].cpu())
    for group, lr in zip(setup.optimizer.param_groups, state["lrs"], strict=True):
        group["lr"] = lr
    best_value, best_epoch, since_best = state["best"]
    return Progress(list(state["history"]), best_value, best_epoch, since_best,
                     int(state["epoch"]) + 1)


def _save(checkpoint: Path, setup: _Setup, progress: Progress) -> None:
    save_checkpoint(checkpoint, setup.model, setup.optimizer, setup.schedule, setup.generator,
                    progress)


def save_checkpoint(checkpoint: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                    schedule: Schedule, generator: torch.Generator, progress: Progress) -> None:
    """The one checkpoint format (``_restore`` reads it): a fused member writes it too, so its
    retry continues alone."""
    _save_atomically({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                      "schedule": schedule.state_dict(), "generator": generator.get_state(),
                      "history": progress.history,
                      "best": (progress.best_value, progress.best_epoch, progress.since_best),
                      "epoch": progress.next_epoch - 1,
                      "lrs": [g["lr"] for g in optimizer.param_groups]}, checkpoint)


def _train_epoch(setup: _Setup, trainer: TrainerSpec, epoch: int, n_train: int) -> float:
    """One pass over ``n_train`` examples of the training data in a shuffled order (a random
    share of it in the epochs ``trainer.data_shares`` names); the mean training loss."""
    model, bundle, x_fit, y_fit = setup.model, setup.bundle, setup.x_fit, setup.y_fit
    l1, clip = float(setup.config["l1"]), float(setup.config["grad_clip"])
    augment = Augmentation.of(trainer, setup.config)
    on_images = bundle.is_image and augment.on_images
    classify = bundle.task == "classification"
    model.train()
    order = torch.randperm(len(x_fit), device=setup.device,
                           generator=setup.generator)[:n_train]
    loss_sum = torch.zeros((), device=setup.device)
    batches = 0
    for start in epoch_end.batch_starts(n_train, setup.batch_size):
        idx = order[start:start + setup.batch_size]
        xb, yb = x_fit[idx], y_fit[idx]
        if on_images:
            xb = augment.images(xb, setup.generator)
        with setup.autocast():
            loss = (augment.loss(setup.loss_fn, xb, yb, setup.forward, setup.generator)
                    if classify else setup.loss_fn(setup.forward(xb).float(), yb))
            if l1:
                loss = loss + l1 * _l1_penalty(model)
        setup.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        setup.optimizer.step()
        loss_sum += loss.detach()
        batches += 1
    train_loss = (loss_sum / max(1, batches)).item()  # the epoch's one host sync
    failure = epoch_end.diverged(train_loss, epoch, setup.config["lr"])
    if failure is not None:
        raise failure
    return train_loss
