"""Fused trials: K configurations of one model structure trained as one batched model
(``stacked``, ``stacked_optim``), each member still a whole trial of its own. Which
configurations may join a group is ``fusable``'s to say.

Members may join a running group at an epoch boundary (``refill``): members that joined
together form a cohort with its own batch order, and step counts are per member.

Exactness: a member starts from the very weights its lone trial would (built the same way from
the same seed), sees the same batches (its cohort's generator, seeded as the lone trial's),
draws its dropout masks from its own generator holding the state the lone trial's global
generator would hold, and takes the same optimizer steps with its own hyperparameters. Its
per-epoch metrics then equal a lone run's up to float rounding, which ``tests/test_fused.py``
checks. Each member writes the lone checkpoint format, so a retry after a crash continues alone
from it; what ends each member's epoch is ``epochs``, as for a lone trial.
"""

from __future__ import annotations

import functools
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from tunecli.errors import TrialCut, TrialFailed
from tunecli.trainer import epochs as epoch_end
from tunecli.trainer import models, threads
from tunecli.trainer.augment import Augmentation
from tunecli.trainer.data import DataBundle
from tunecli.trainer.epochs import Progress, Reporter, TrainResult
from tunecli.trainer.fusable import PER_MEMBER, SHARED_BY_MODEL, group_key
from tunecli.trainer.layers import activation
from tunecli.trainer.loop import autocast_for, prepare, save_checkpoint
from tunecli.trainer.metrics import scores
from tunecli.trainer.optim import Schedule, make_optimizer
from tunecli.trainer.stacked import FunctionalStack, Stack, StackedModel
from tunecli.trainer.stacked_optim import StackedOptimizer

if TYPE_CHECKING:
    from tunecli.spec.models import TrainerSpec

__all__ = ["CHECKPOINT_SECONDS", "MemberJob", "train_group"]

# A group writes its members' checkpoints when a member finishes and otherwise at most this
# often: K files per epoch would cost more than a small model's epoch. A crash loses at most
# this much of the group's training; the members' retries continue from the last save.
CHECKPOINT_SECONDS = 10.0


@dataclass
class MemberJob:
    """One trial of a group: its parameters, where its epochs go and its checkpoint."""

    params: dict[str, Any]
    reporter: Reporter
    checkpoint: Path | None = None
    # Called once when the member leaves the group, with its result or what ended it, so the
    # caller can store it at once while the others train on.
    on_end: Callable[[TrainResult | BaseException], None] | None = None
    stop_after: int | None = None  # the compute budget's claim: leave after this epoch
    reported: int = 0           # epochs already reported (a group re-run after OOM skips them)
    outcome: TrainResult | BaseException | None = None

    def end(self, outcome: TrainResult | BaseException) -> TrainResult | BaseException:
        self.outcome = outcome
        if self.on_end is not None:
            self.on_end(outcome)
        return outcome


@dataclass(eq=False)
class _Cohort:
    """Members that joined the group at the same epoch boundary: they are at the same epoch,
    so they see the same batches, drawn from one generator in the lone trial's order."""

    generator: torch.Generator


@dataclass
class _Member:
    job: MemberJob
    config: dict[str, Any]
    model: nn.Module            # the lone model: initial weights, and the checkpoint's layout
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    dropout_generator: torch.Generator
    cohort: _Cohort
    step_work: float            # multiply-adds of its training step on the CPU (threads)
    started: float = field(default_factory=time.perf_counter)
    epoch: int = 1              # the epoch it trains next
    progress: Progress = field(default_factory=Progress)
    outcome: TrainResult | BaseException | None = None


# ---------------------------------------------------------------------------------------------
# Training a group


Refill = Callable[[int], list[MemberJob]]


def train_group(trainer: TrainerSpec, jobs: list[MemberJob], *, metric: str,
              direction: str = "maximize", base_dir: str | None = None,
              data_root: str | None = None, refill: Refill | None = None,
              slots: int | None = None) -> list[TrainResult | BaseException]:
    """Train the jobs' configurations as one group; per job its result, or the exception that
    ended it (the reporter's, e.g. a prune, or ``TrialFailed``). Each job's reporter gets every
    epoch as in a lone trial. Out of memory splits the group in halves, which start again
    (epochs already reported are not reported twice); a member alone out of memory fails.
    A ``KeyboardInterrupt`` stops the whole group.

    ``refill(free)``: called at each epoch boundary while fewer than ``slots`` (default: the
    jobs given) members train, it returns jobs to join the group there (none: no more). A
    joining member starts at its epoch 1 while the others go on, with its own batch order, so
    it still equals its lone trial; its job is added to ``jobs`` (the returned outcomes follow
    ``jobs``). Why: a pruner removes most of a group within a few epochs, and a group of one or
    two trains little faster than they would alone.
    """
    if len({group_key(trainer, job.params) for job in jobs}) > 1:
        shared = SHARED_BY_MODEL.get(trainer.model)
        raise ValueError("a group's members must share " + (
            ", ".join(shared) if shared else f"all but {', '.join(PER_MEMBER)}"))
    device, bundle = prepare(trainer, metric, base_dir, data_root)
    try:
        _train(trainer, jobs, metric, direction == "minimize", device, bundle, base_dir,
               refill, slots or len(jobs))
    except torch.OutOfMemoryError:
        going = [job for job in jobs if job.outcome is None]
        failure = epoch_end.out_of_memory(device, going[0].params.get("batch_size")
                                          if going else None)
        if len(going) == 1:
            going[0].end(failure)
        elif going:
            half = len(going) // 2
            for part in (going[:half], going[half:]):
                train_group(trainer, part, metric=metric, direction=direction,
                          base_dir=base_dir, data_root=data_root)
    return [job.outcome for job in jobs]  # type: ignore[misc]


def _member(trainer: TrainerSpec, job: MemberJob, bundle: DataBundle, device: torch.device,
            minimize: bool, base_dir: str | None, cohort: _Cohort) -> _Member:
    config = models.full_config(trainer.model, job.params)
    torch.manual_seed(trainer.seed)
    model = models.build(trainer.model, config, bundle.input_shape, bundle.n_outputs,
                         base_dir).to(device)
    # The lone trial's dropout draws from the global generator, which now holds this state.
    dropout = torch.Generator(device=device)
    dropout.set_state(torch.get_rng_state() if device.type == "cpu"
                      else torch.cuda.get_rng_state(device))
    optimizer = make_optimizer(config, model.parameters(), device)
    return _Member(job, config, model, optimizer,
                   Schedule(config, optimizer, trainer.epochs, minimize), dropout, cohort,
                   threads.step_work(model, bundle.input_shape,
                                     max(1, int(config["batch_size"])), device))


def _cohort(trainer: TrainerSpec, device: torch.device) -> _Cohort:
    """The lone trial's batch-order generator, as it stands before its first epoch."""
    return _Cohort(torch.Generator(device=device).manual_seed(trainer.seed))


def _train(trainer: TrainerSpec, jobs: list[MemberJob], metric: str, minimize: bool,
           device: torch.device, bundle: DataBundle, base_dir: str | None,
           refill: Refill | None, slots: int) -> None:
    first_cohort = _cohort(trainer, device)
    members = [_member(trainer, job, bundle, device, minimize, base_dir, first_cohort)
               for job in jobs]
    first = members[0].config

    def stack(group: list[_Member]) -> tuple[Stack, StackedOptimizer]:
        lone_models = [m.model for m in group]
        model: Stack = (
            StackedModel(lone_models, activation(first["activation"]), device)
            if trainer.model in SHARED_BY_MODEL else FunctionalStack(lone_models, device))
        return model, StackedOptimizer(first["optimizer"], model.params,
                                        [m.config for m in group], bool(first["nesterov"]))

    stacked, optimizer = stack(members)
    autocast = autocast_for(trainer, device)
    active = list(members)
    last_saved = time.perf_counter()
    while active:
        # Each member's rate as its lone schedule set it (warm-up included) for this epoch.
        optimizer.lrs = [m.optimizer.param_groups[0]["lr"] for m in active]
        epoch_start = time.perf_counter()
        train_losses = _train_epoch(trainer, stacked, optimizer, active, bundle, autocast)
        outputs = _evaluate(stacked, bundle, trainer.eval_batch_size, autocast)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - epoch_start
        save_all = time.perf_counter() - last_saved >= CHECKPOINT_SECONDS
        staying: list[int] = []
        for row, member in enumerate(active):
            save = functools.partial(_save_member, member, stacked, optimizer, row)
            member.outcome = _end_of_epoch(trainer, member, metric, minimize, bundle,
                                           outputs[row], train_losses[row], seconds,
                                           optimizer.lrs[row], len(active), save_all, save)
            if member.outcome is None:
                staying.append(row)
            else:
                member.job.end(member.outcome)
        if save_all:
            last_saved = time.perf_counter()
        if len(staying) < len(active):
            if staying:
                stacked.keep(staying)
                optimizer.keep(staying, stacked)
            active = [active[row] for row in staying]
        joining = refill(slots - len(active)) if refill and len(active) < slots else []
        if joining:
            jobs.extend(joining)
            cohort = _cohort(trainer, device)
            new = [_member(trainer, job, bundle, device, minimize, base_dir, cohort)
                   for job in joining]
            if active:
                stacked.add([m.model for m in new])
                optimizer.add([m.config for m in new], stacked)
            else:  # everyone left: the newcomers make a fresh stacked model
                stacked, optimizer = stack(new)
            active += new


def _end_of_epoch(trainer: TrainerSpec, member: _Member, metric: str, minimize: bool,
                  bundle: DataBundle, output: torch.Tensor, train_loss: float, seconds: float,
                  lr: float, together: int, save_all: bool, save: Callable[[], None]
                  ) -> TrainResult | BaseException | None:
    """A member's epoch as a lone trial ends it: its outcome when it leaves, else None.
    Its checkpoint is saved (before the epoch is reported, as a lone trial's) when the group
    saves all or the member finishes. ``together``: the members that trained this epoch."""
    config = member.config
    epoch = member.epoch
    member.epoch += 1
    last = epoch == epoch_end.last_epoch(trainer.epochs, member.job.stop_after)
    failure = epoch_end.diverged(train_loss, epoch, config["lr"])
    if failure is not None:
        return failure
    n_train = len(bundle.x_train)
    metrics = epoch_end.epoch_metrics(
        scores(output, bundle.y_val, bundle.task, bundle.n_outputs,
               target_scale=(bundle.target_mean, bundle.target_std)),
        train_loss, seconds, n_train, lr, fused_members=float(together))
    progress = member.progress
    try:
        progress.record(epoch, metrics, metric, metrics[metric], minimize)
    except TrialFailed as exc:
        return exc
    with warnings.catch_warnings():  # the holder optimizer never steps; the stacked one does
        warnings.filterwarnings("ignore", message=re.escape("Detected call of `lr_scheduler"))
        member.schedule.step(epoch, metrics[metric])
    stopped = progress.stalled(trainer.early_stopping)
    if save_all or stopped or last:
        save()
    try:
        if epoch > member.job.reported:
            member.job.reporter.report(epoch, metrics)
            member.job.reported = epoch
    except TrialCut as exc:  # the time limit: its retry continues from this epoch
        if not (save_all or stopped or last):
            save()
        return exc
    except Exception as exc:  # the reporter's way to stop a trial: a prune
        return exc
    if stopped or last:
        return _result(member, stacked_device=output.device, n_train=n_train,
                       stopped_early=stopped)
    return None


def _save_member(member: _Member, stacked: Stack, optimizer: StackedOptimizer,
                 row: int) -> None:
    if member.job.checkpoint is None:
        return
    stacked.copy_to(row, member.model)
    lone_params = list(member.model.parameters())
    member.optimizer.state.clear()
    member.optimizer.state.update(optimizer.lone_state(row, stacked, lone_params))
    save_checkpoint(member.job.checkpoint, member.model, member.optimizer, member.schedule,
                    member.cohort.generator, member.progress)


def _result(member: _Member, *, stacked_device: torch.device, n_train: int,
            stopped_early: bool) -> TrainResult:
    return epoch_end.result(member.progress,
                            params_count=models.count_parameters(member.model),
                            device=stacked_device, seen=n_train * len(member.progress.history),
                            elapsed=time.perf_counter() - member.started,
                            stopped_early=stopped_early, config=member.config)


def _train_epoch(trainer: TrainerSpec, stacked: Stack, optimizer: StackedOptimizer,
                 active: list[_Member], bundle: DataBundle, autocast: Any) -> list[float]:
    """One pass over the training data, each member in its lone trial's order (one order per
    cohort); each member's mean loss."""
    x_fit, y_fit, device = bundle.x_train, bundle.y_train, bundle.x_train.device
    threads.use(trainer.threads, device, sum(m.step_work for m in active))
    batch_size = max(1, int(active[0].config["batch_size"]))
    each = Settings.of([m.config for m in active], device)
    dropout_generators = [m.dropout_generator for m in active]
    augment = Augmentation.of(trainer, active[0].config)  # members share crop and flip
    augmenting = bundle.is_image and augment.on_images
    stacked.training = True
    n_train = len(x_fit)
    cohorts = list(dict.fromkeys(m.cohort for m in active))
    orders = [torch.randperm(n_train, device=device, generator=c.generator) for c in cohorts]
    # Which cohort's batch each member takes (None: one cohort, one batch for all).
    rows = None if len(cohorts) == 1 else torch.tensor(
        [cohorts.index(m.cohort) for m in active], device=device)
    loss_sum = torch.zeros(stacked.k, device=device)
    batches = 0
    for start in epoch_end.batch_starts(n_train, batch_size):
        size = min(batch_size, n_train - start)
        xs, ys = [], []
        for cohort, order in zip(cohorts, orders, strict=True):
            idx = order[start:start + batch_size]
            xb = x_fit[idx]
            xs.append(augment.images(xb, cohort.generator) if augmenting else xb)
            ys.append(y_fit[idx])
        shape = (-1,) if stacked.flat_inputs else xs[0].shape[1:]
        if rows is None:
            x = xs[0].reshape(size, *shape).expand(stacked.k, size, *shape)
            y = ys[0].expand(stacked.k, *ys[0].shape)
        else:
            x = torch.stack([xb.reshape(size, *shape) for xb in xs])[rows]
            y = torch.stack(ys)[rows]
        noise = dropout_noise(each.dropout, dropout_generators, stacked, size, device)
        with autocast():
            out = stacked.forward(x, noise).float()
            losses = (cross_entropy(out, y, each.smoothing)
                      if bundle.task == "classification"
                      else epoch_end.squared_error(out, y))
            if each.l1 is not None:
                losses = losses + each.l1 * stacked.l1_penalty()
        for p in stacked.params:  # zeroed in place: the buffers are reused, not made anew
            if p.grad is not None:
                p.grad.zero_()
        losses.sum().backward()  # type: ignore[no-untyped-call]
        if each.clip is not None:
            clip_gradients(stacked.params, each.clip)
        optimizer.step()
        stacked.batches_tracked = [n + 1 for n in stacked.batches_tracked]
        loss_sum += losses.detach()
        batches += 1
    values: list[float] = (loss_sum / max(1, batches)).tolist()  # the epoch's one host sync
    return values


def _evaluate(stacked: Stack, bundle: DataBundle, batch_size: int,
              autocast: Any) -> torch.Tensor:
    """Every member's outputs on the validation part: ``[K, n_val, outputs]``."""
    stacked.training = False
    outputs = []
    with torch.inference_mode(), autocast():
        for start in range(0, len(bundle.x_val), batch_size):
            x = bundle.x_val[start:start + batch_size]
            shape = (-1,) if stacked.flat_inputs else x.shape[1:]
            x = x.reshape(len(x), *shape).expand(stacked.k, len(x), *shape)
            outputs.append(stacked.forward(x, None).float())
    return torch.cat(outputs, dim=1)


# ---------------------------------------------------------------------------------------------
# What each member draws and applies as its own lone trial would: dropout masks, L1 and label
# smoothing in its loss, clipping over its own gradients; once per step for all members at
# once (tensors with the members first).


@dataclass(frozen=True)
class Settings:
    """The members' own L1, clipping and label smoothing as tensors (None where no member uses
    it: the step skips it) and their dropout rates."""

    l1: torch.Tensor | None
    clip: torch.Tensor | None
    smoothing: torch.Tensor | None
    dropout: list[float]

    @classmethod
    def of(cls, configs: list[dict[str, Any]], device: torch.device) -> Settings:
        def tensor(name: str) -> torch.Tensor | None:
            values = [float(config[name]) for config in configs]
            return torch.tensor(values, device=device) if any(values) else None

        # A user model has no dropout setting: its own modules draw.
        return cls(tensor("l1"), tensor("grad_clip"), tensor("label_smoothing"),
                   [float(config.get("dropout", 0)) for config in configs])


def dropout_noise(rates: list[float], generators: list[torch.Generator], stacked: Stack,
                  batch: int, device: torch.device) -> list[torch.Tensor] | None:
    """Per hidden layer, each member's dropout mask scaled by 1/(1-p), drawn from its own
    generator as the lone trial's ``nn.Dropout`` draws it (``bernoulli_`` then ``div_``), zero
    over the padding."""
    if not stacked.hidden or not any(rates):
        return None
    noise = []
    for layer in stacked.hidden:
        widths = stacked.layer_out[layer]
        masks = []
        for generator, p, width in zip(generators, rates, widths, strict=True):
            mask = (torch.empty(batch, width, device=device)
                    .bernoulli_(1 - p, generator=generator).div_(1 - p) if p
                    else torch.ones(batch, width, device=device))
            masks.append(nn.functional.pad(mask, (0, max(widths) - width)))
        noise.append(torch.stack(masks))
    return noise


def cross_entropy(out: torch.Tensor, y: torch.Tensor,
                  smoothing: torch.Tensor | None) -> torch.Tensor:
    """Each member's mean cross-entropy (``[K]``, from ``out`` ``[K, B, classes]``) with its
    own label smoothing ``e``, as torch's ``cross_entropy(label_smoothing=e)`` takes it for
    the lone trial: ``(1 - e) * nll + e * mean over classes of -log p``."""
    nll = nn.functional.cross_entropy(out.permute(1, 2, 0), y.t(), reduction="none")  # [B, K]
    if smoothing is None:
        return nll.mean(0)
    uniform = -out.log_softmax(-1).mean(-1).t()
    return ((1 - smoothing) * nll + smoothing * uniform).mean(0)


def clip_gradients(params: list[torch.Tensor], clip: torch.Tensor) -> None:
    """``clip_grad_norm_`` for each member over its own gradients; 0 means no clipping."""
    with torch.no_grad():
        norms = torch.stack([p.grad.pow(2).sum((1, 2)) for p in params  # type: ignore[union-attr]
                             ]).sum(0).sqrt()
        coef = torch.where(clip > 0, (clip / (norms + 1e-6)).clamp(max=1.0), 1.0)
        for p in params:
            p.grad.mul_(coef.view(-1, 1, 1))  # type: ignore[union-attr]
