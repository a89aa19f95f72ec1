"""The training loop: one configuration in, per-epoch metrics out, a final value back.

Batches come from a shuffled index over tensors already on the device (no DataLoader), the
loss is checked once per epoch (one host sync, not one per batch), and every epoch is reported
to the ``Reporter``, which may stop the trial (pruning) by raising.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from tunecli.errors import SpecError, TrialFailed
from tunecli.spec import TrainerSpec
from tunecli.trainer import data as data_sets
from tunecli.trainer import models
from tunecli.trainer.hyperparams import LOOP_DEFAULTS

__all__ = ["Reporter", "TrainResult", "run", "resolve_device", "make_optimizer", "evaluate",
           "prepare"]


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
    # Final training only: metrics on the held-out test part, measured once at the end.
    test_metrics: dict[str, float] = field(default_factory=dict)
    # The whole configuration trained: loop and model defaults with the given params on top.
    config: dict[str, Any] = field(default_factory=dict)
    # The trained weights (of the last epoch), for `tunecli train`; never stored in Optuna.
    state_dict: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SpecError(f"device {name!r} was asked for but CUDA is not available",
                        path="trainer.device", fix="Use device: auto or cpu.")
    return torch.device(name)


def make_optimizer(config: dict[str, Any], parameters: Any,
                   device: torch.device) -> torch.optim.Optimizer:
    name, lr, wd = config["optimizer"], float(config["lr"]), float(config["weight_decay"])
    fused = {"fused": True} if device.type == "cuda" else {}
    if name == "sgd":
        momentum = float(config["momentum"])
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=wd,
                               nesterov=bool(config["nesterov"]) and momentum > 0, **fused)
    if name in ("adam", "adamw"):
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return cls(parameters, lr=lr, betas=(float(config["beta1"]), float(config["beta2"])),
                   weight_decay=wd, **fused)
    if name == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=lr, momentum=float(config["momentum"]),
                                   weight_decay=wd)
    if name == "adagrad":
        return torch.optim.Adagrad(parameters, lr=lr, weight_decay=wd)
    if name == "adadelta":
        return torch.optim.Adadelta(parameters, lr=lr, weight_decay=wd)
    raise SpecError(f"unknown optimizer {name!r}", path="space.optimizer",
                    fix="Use sgd, adam, adamw, rmsprop, adagrad or adadelta.")


class _Schedule:
    """Warm-up then none/step/cosine/plateau, stepped once per epoch."""

    def __init__(self, config: dict[str, Any], optimizer: torch.optim.Optimizer,
                 epochs: int, minimize: bool) -> None:
        self.optimizer = optimizer
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.warmup = int(config["warmup_epochs"])
        kind = config["schedule"]
        self.plateau = None
        self.inner: Any = None
        if kind == "step":
            self.inner = torch.optim.lr_scheduler.StepLR(
                optimizer, step_size=max(1, int(config["step_size"])), gamma=float(config["gamma"]))
        elif kind == "cosine":
            self.inner = torch.optim.lr_scheduler.CosineAnnealingLR(
                optimizer, T_max=max(1, epochs - self.warmup))
        elif kind == "plateau":
            self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min" if minimize else "max", factor=float(config["gamma"]),
                patience=int(config["plateau_patience"]))
        elif kind != "none":
            raise SpecError(f"unknown schedule {kind!r}", path="space.schedule",
                            fix="Use none, step, cosine or plateau.")
        self.set_warmup(1)

    def set_warmup(self, epoch: int) -> None:
        if self.warmup and epoch <= self.warmup:
            for group, base in zip(self.optimizer.param_groups, self.base_lrs):
                group["lr"] = base * epoch / (self.warmup + 1)

    def step(self, epoch: int, metric: float) -> None:
        """Called after ``epoch`` finished; sets the learning rate of the next epoch."""
        if self.warmup and epoch < self.warmup:
            self.set_warmup(epoch + 1)
            return
        if epoch == self.warmup and self.warmup:
            for group, base in zip(self.optimizer.param_groups, self.base_lrs):
                group["lr"] = base
            return
        if self.inner is not None:
            self.inner.step()
        elif self.plateau is not None:
            self.plateau.step(metric)

    def state_dict(self) -> dict[str, Any]:
        sched = self.inner or self.plateau
        return {"inner": sched.state_dict() if sched is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        sched = self.inner or self.plateau
        if sched is not None and state.get("inner") is not None:
            sched.load_state_dict(state["inner"])


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: str, n_outputs: int,
             batch_size: int, autocast: Any, prefix: str = "val",
             target_scale: tuple[float, float] = (0.0, 1.0)) -> dict[str, float]:
    """Loss and task metrics over (x, y), computed on the device; regression metrics in the
    target's original units (``target_scale``: the training part's mean and std)."""
    model.eval()
    outputs = []
    with torch.inference_mode(), autocast():
        for start in range(0, len(x), batch_size):
            outputs.append(model(x[start:start + batch_size]).float())
    out = torch.cat(outputs)
    if task == "classification":
        loss = nn.functional.cross_entropy(out, y).item()
        pred = out.argmax(dim=1)
        confusion = torch.bincount(y * n_outputs + pred, minlength=n_outputs ** 2)
        confusion = confusion.reshape(n_outputs, n_outputs).double()
        true_pos = confusion.diag()
        predicted, actual = confusion.sum(0), confusion.sum(1)
        precision = torch.where(predicted > 0, true_pos / predicted.clamp(min=1), 0.0)
        recall = torch.where(actual > 0, true_pos / actual.clamp(min=1), 0.0)
        f1 = torch.where(precision + recall > 0,
                         2 * precision * recall / (precision + recall).clamp(min=1e-12), 0.0)
        present = actual > 0  # macro average over the classes present, as scikit-learn warns
        return {f"{prefix}_loss": loss,
                f"{prefix}_accuracy": (true_pos.sum() / len(y)).item(),
                f"{prefix}_precision": precision[present].mean().item(),
                f"{prefix}_recall": recall[present].mean().item(),
                f"{prefix}_f1": f1[present].mean().item()}
    shift, scale = target_scale
    pred = out.reshape(-1) * scale + shift
    y = y * scale + shift
    err = pred - y
    mse = (err ** 2).mean().item()
    variance = ((y - y.mean()) ** 2).mean().item()
    return {f"{prefix}_loss": mse, f"{prefix}_mse": mse, f"{prefix}_rmse": math.sqrt(mse),
            f"{prefix}_mae": err.abs().mean().item(),
            f"{prefix}_r2": 1.0 - mse / variance if variance > 0 else 0.0}


def _l1_penalty(model: nn.Module) -> torch.Tensor:
    # Weights only: penalising biases and norm scales is not what L1 regularisation means.
    return sum(p.abs().sum() for n, p in model.named_parameters() if p.ndim > 1)  # type: ignore


def _save_atomically(state: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def prepare(trainer: TrainerSpec, metric: str, base_dir: str | None,
            data_root: str | None) -> tuple[torch.device, data_sets.DataBundle]:
    """The device and the data (cached per process), checked against the metric."""
    device = resolve_device(trainer.device)
    root = data_sets.resolve_data_root(trainer.data_root, base_dir, data_root)
    bundle = data_sets.load(trainer.dataset, root, trainer.download, device, base_dir)
    allowed = (data_sets.CLASSIFICATION_METRICS if bundle.task == "classification"
               else data_sets.REGRESSION_METRICS)
    if metric not in allowed:
        raise SpecError(f"metric '{metric}' is not reported for a {bundle.task} data set",
                        path="metric", fix=f"Use one of: {', '.join(allowed)}.")
    return device, bundle


def run(trainer: TrainerSpec, params: dict[str, Any], reporter: Reporter, *, metric: str,
        direction: str = "maximize", base_dir: str | None = None,
        data_root: str | None = None, checkpoint: Path | None = None,
        final_epochs: int | None = None) -> TrainResult:
    """Train one configuration; report every epoch; return the best epoch's metric.

    ``checkpoint``: a file where model and optimizer state are saved after each epoch; when it
    already exists the trial continues after its last finished epoch.
    ``final_epochs``: final training instead of a trial: train that many epochs on training +
    validation data (nothing is left to pick an epoch or stop early with), then evaluate once
    on the test part (``test_metrics``); epochs report only their training loss.
    Raises ``TrialFailed`` for a NaN/infinite loss or an out-of-memory error.
    """
    device, bundle = prepare(trainer, metric, base_dir, data_root)
    final = final_epochs is not None
    if final and len(bundle.x_test) == 0:
        raise SpecError("the data set has no test part to evaluate the final model on",
                        path="trainer.dataset.test_fraction",
                        fix="Set test_fraction above 0, e.g. 0.2.")
    epochs = final_epochs if final else trainer.epochs
    x_fit, y_fit = ((torch.cat([bundle.x_train, bundle.x_val]),
                     torch.cat([bundle.y_train, bundle.y_val])) if final
                    else (bundle.x_train, bundle.y_train))
    config = {**LOOP_DEFAULTS, **models.defaults_for(trainer.model), **params}
    torch.manual_seed(trainer.seed)
    generator = torch.Generator(device=device).manual_seed(trainer.seed)
    model = models.build(trainer.model, config, bundle.input_shape, bundle.n_outputs,
                         base_dir).to(device)
    n_params = models.count_parameters(model)
    optimizer = make_optimizer(config, model.parameters(), device)
    # Final training has no validation metric: a plateau schedule watches the training loss.
    minimize = direction == "minimize" or final
    schedule = _Schedule(config, optimizer, epochs, minimize)
    use_bf16 = trainer.precision == "bf16" or (trainer.precision == "auto"
                                               and device.type == "cuda")

    def autocast() -> Any:
        if not use_bf16:  # entering a disabled autocast still costs time on every batch
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=torch.bfloat16)

    forward = torch.compile(model) if trainer.compile else model
    loss_fn = nn.functional.cross_entropy if bundle.task == "classification" else (
        lambda out, target: nn.functional.mse_loss(out.reshape(-1), target))
    batch_size = max(1, int(config["batch_size"]))
    l1, clip = float(config["l1"]), float(config["grad_clip"])
    augment = trainer.dataset.augment
    n_train = len(x_fit)
    target_scale = (bundle.target_mean, bundle.target_std)

    history: list[dict[str, float]] = []
    best_value, best_epoch, since_best = math.nan, 0, 0
    first_epoch = 1
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        generator.set_state(state["generator"].to("cpu") if device.type == "cpu"
                            else state["generator"].cpu())
        history = list(state["history"])
        best_value, best_epoch, since_best = state["best"]
        first_epoch = int(state["epoch"]) + 1
        for group, lr in zip(optimizer.param_groups, state["lrs"]):
            group["lr"] = lr

    stopped_early = False
    started = time.perf_counter()
    seen = 0
    try:
        for epoch in range(first_epoch, epochs + 1):
            model.train()
            epoch_start = time.perf_counter()
            order = torch.randperm(n_train, device=device, generator=generator)
            loss_sum = torch.zeros((), device=device)
            batches = 0
            for start in range(0, n_train, batch_size):
                idx = order[start:start + batch_size]
                if len(idx) < 2 and n_train > 1:
                    continue  # a batch of one breaks batch norm and adds only noise
                xb, yb = x_fit[idx], y_fit[idx]
                if bundle.is_image and (augment.crop or augment.flip):
                    xb = data_sets.augment_batch(xb, augment.crop, augment.flip, generator)
                with autocast():
                    loss = loss_fn(forward(xb).float(), yb)
                    if l1:
                        loss = loss + l1 * _l1_penalty(model)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if clip:
                    nn.utils.clip_grad_norm_(model.parameters(), clip)
                optimizer.step()
                loss_sum += loss.detach()
                batches += 1
            train_loss = (loss_sum / max(1, batches)).item()  # the epoch's one host sync
            if not math.isfinite(train_loss):
                raise TrialFailed(f"the training loss became {train_loss} in epoch {epoch} "
                                  f"(lr={config['lr']}); lower the learning rate range")
            metrics = {} if final else evaluate(model, bundle.x_val, bundle.y_val, bundle.task,
                                                bundle.n_outputs, trainer.eval_batch_size,
                                                autocast, target_scale=target_scale)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - epoch_start
            seen += n_train
            metrics.update({"train_loss": train_loss, "epoch_seconds": seconds,
                            "samples_per_second": n_train / seconds if seconds else 0.0,
                            "lr": optimizer.param_groups[0]["lr"]})
            value = train_loss if final else metrics[metric]
            if not math.isfinite(value):
                raise TrialFailed(f"{metric} became {value} in epoch {epoch}")
            better = (math.isnan(best_value) or (value < best_value if minimize
                                                 else value > best_value))
            if better:
                best_value, best_epoch, since_best = value, epoch, 0
            else:
                since_best += 1
            history.append({"epoch": epoch, **metrics})
            schedule.step(epoch, value)
            if checkpoint is not None:
                _save_atomically({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                  "schedule": schedule.state_dict(),
                                  "generator": generator.get_state(), "history": history,
                                  "best": (best_value, best_epoch, since_best), "epoch": epoch,
                                  "lrs": [g["lr"] for g in optimizer.param_groups]}, checkpoint)
            reporter.report(epoch, metrics)
            if not final and trainer.early_stopping and since_best >= trainer.early_stopping:
                stopped_early = True
                break
    except torch.OutOfMemoryError:
        del model, optimizer, forward
        if device.type == "cuda":
            torch.cuda.empty_cache()
        raise TrialFailed(f"out of memory on {device} with batch_size {batch_size} and "
                          f"{n_params:,} parameters; lower batch_size or the model size") \
            from None
    elapsed = time.perf_counter() - started
    test_metrics = evaluate(model, bundle.x_test, bundle.y_test, bundle.task, bundle.n_outputs,
                            trainer.eval_batch_size, autocast, prefix="test",
                            target_scale=target_scale) if final else {}
    return TrainResult(value=best_value, best_epoch=best_epoch, epochs_run=len(history),
                       history=history, params_count=n_params, device=str(device),
                       samples_per_second=seen / elapsed if elapsed else 0.0,
                       stopped_early=stopped_early, train_seconds=elapsed,
                       test_metrics=test_metrics, config=config,
                       state_dict={k: v.detach().cpu() for k, v in model.state_dict().items()})
