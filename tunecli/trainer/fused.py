"""Fused trials: K configurations of one model structure trained as one batched model.

Why: a small model leaves the machine idle; one step is a few tiny matrix products plus Python
and optimizer overhead. Stacking the K members' weights (``[K, in, out]``, one batched matmul
per linear layer; one ``groups=K`` convolution over the members' channels side by side per
convolution layer) and updating them with one batched optimizer trains all K for about the
price of one.

What members share (``SHARED_BY_MODEL``): depth (an MLP) or conv blocks and kernel size (a
CNN), batch size, optimizer, activation, batch norm, Nesterov, AMSGrad, crop and flip. The rest
is per member: learning rate, momentum, betas, weight decay, L1, dropout, gradient clipping, the
schedule and its settings, the initialisation and the widths (units, channels). The other
augmentations (``ALONE``) train one trial at a time.
Widths are padded to the widest member; the padding starts at zero and every activation maps 0
to 0, so padded units and channels stay zero, get zero gradients and change nothing (batch
norm included: a zero column normalises to zero).

A user model (``module:function``) is stacked through ``torch.func`` instead
(``_FunctionalStack``: one ``vmap`` of ``functional_call``); its members share all but
``PER_MEMBER``, and ``why_not_functional`` probes whether ``vmap`` can run it.

Members may join a running group at an epoch boundary (``refill``): members that joined
together form a cohort with its own batch order, and step counts are per member.

Exactness: a member starts from the very weights its lone trial would (built the same way from
the same seed), sees the same batches (its cohort's generator, seeded as the lone trial's),
draws its dropout masks from its own generator holding the state the lone trial's global
generator would hold, and takes the same optimizer steps with its own hyperparameters. Its
per-epoch metrics then equal a lone run's up to float rounding, which ``tests/test_fused.py``
checks. Each member writes the lone checkpoint format, so a retry after a crash continues alone
from it.
"""

from __future__ import annotations

import functools
import math
import re
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from tunecli.errors import TrialCut, TrialFailed
from tunecli.trainer import epochs as epoch_end
from tunecli.trainer import models
from tunecli.trainer.augment import Augmentation
from tunecli.trainer.data import DataBundle
from tunecli.trainer.epochs import Progress, Reporter, TrainResult
from tunecli.trainer.loop import autocast_for, prepare, save_checkpoint
from tunecli.trainer.metrics import scores
from tunecli.trainer.optim import Schedule, make_optimizer

if TYPE_CHECKING:
    from tunecli.spec.models import TrainerSpec

__all__ = [
    "ALONE",
    "FUSABLE_OPTIMIZERS",
    "PER_MEMBER",
    "SHARED",
    "SHARED_BY_MODEL",
    "WIDTHS_BY_MODEL",
    "MemberJob",
    "group_key",
    "round_fixes",
    "run_group",
    "why_not_functional",
    "why_not_fused",
    "work_per_example",
]

_COMMON = ("batch_size", "optimizer", "activation", "batch_norm", "nesterov", "amsgrad", "crop",
           "flip")
# What one stacked model's members must share, per fused model; and the widths a round fixes
# for its members too (they may differ, padded, but the padding costs the widest's work).
SHARED_BY_MODEL = {"mlp": ("depth", *_COMMON), "cnn": ("conv_blocks", "kernel_size", *_COMMON)}
WIDTHS_BY_MODEL = {"mlp": ("width",), "cnn": ("channels", "classifier_width")}
SHARED = SHARED_BY_MODEL["mlp"]
# A user model's members may differ only in what the training loop applies itself (the
# optimizer's and the schedule's settings); anything else its builder may read, so they share it.
PER_MEMBER = ("lr", "momentum", "beta1", "beta2", "weight_decay", "l1", "grad_clip", "schedule",
              "step_size", "gamma", "plateau_patience", "warmup_epochs")
ALONE = ("rotate", "translate", "cutout", "mixup", "label_smoothing")  # not in the fused step
FUSABLE_OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
_BN_EPS, _BN_MOMENTUM = 1e-5, 0.1      # nn.BatchNorm1d's defaults, as the lone model uses
_ADAM_EPS, _RMSPROP_EPS, _RMSPROP_ALPHA = 1e-8, 1e-8, 0.99
# A group writes its members' checkpoints when a member finishes and otherwise at most this
# often: K files per epoch would cost more than a small model's epoch. A crash loses at most
# this much of the group's training; the members' retries continue from the last save.
CHECKPOINT_SECONDS = 10.0


def why_not_fused(trainer: TrainerSpec, params: dict[str, Any]) -> str | None:
    """Why this configuration trains alone (None: it can join a group)."""
    if trainer.model in models.MODELS and trainer.model not in SHARED_BY_MODEL:
        return (f"model {trainer.model!r} is trained one trial at a time (fused: "
                f"{', '.join(SHARED_BY_MODEL)} and, with trainer.fuse: K, user models)")
    if trainer.model not in models.MODELS and trainer.fuse == "auto":
        return (f"model {trainer.model!r} is a user model, which auto does not fuse (it fuses "
                f"the built-in {' and '.join(SHARED_BY_MODEL)}); set trainer.fuse: K (--fuse K) "
                "to fuse it through torch.func")
    if trainer.compile:
        return "trainer.compile is on: compiled models are trained one at a time"
    if trainer.cv or trainer.repeats > 1:
        return "trainer.repeats/cv trains each trial's runs in lockstep, one trial at a time"
    config = models.full_config(trainer.model, params)
    if config["optimizer"] not in FUSABLE_OPTIMIZERS:
        return (f"optimizer {config['optimizer']!r} is trained one trial at a time (fused: "
                f"{', '.join(FUSABLE_OPTIMIZERS)})")
    if config["amsgrad"]:
        return "amsgrad is trained one trial at a time (the fused optimizers have none)"
    used = [name for name in ALONE if config[name]]
    if used:
        return f"{', '.join(used)} is trained one trial at a time (not in the fused step)"
    return None


def work_per_example(trainer: TrainerSpec, params: dict[str, Any],
                     base_dir: str | None = None, data_root: str | None = None) -> int:
    """The multiply-adds of one example's forward pass through the configuration's model (how
    ``auto`` tells a model too large to gain from fusion): an MLP's weights, a CNN's
    convolutions at each layer's image size."""
    _, bundle = prepare(trainer, "val_loss", base_dir, data_root)
    config = models.full_config(trainer.model, params)
    model = models.build(trainer.model, config, bundle.input_shape, bundle.n_outputs, base_dir)
    total = 0

    def count(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            total += output[0].numel() * module.in_channels * math.prod(module.kernel_size) \
                // module.groups
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features

    hooks = [m.register_forward_hook(count) for m in model.modules()
             if isinstance(m, nn.Conv2d | nn.Linear)]
    with torch.no_grad():
        model.eval()(torch.zeros(1, *bundle.input_shape))
    for hook in hooks:
        hook.remove()
    return total


def group_key(trainer: TrainerSpec, params: dict[str, Any]) -> tuple[Any, ...]:
    """Configurations with equal keys can train as one group."""
    config = models.full_config(trainer.model, params)
    if trainer.model not in SHARED_BY_MODEL:  # a user model: all but PER_MEMBER
        return tuple(sorted((name, repr(value)) for name, value in config.items()
                            if name not in PER_MEMBER))
    return tuple(config[name] for name in SHARED_BY_MODEL[trainer.model])


def round_fixes(model: str, name: str) -> bool:
    """Whether a fused round fixes parameter ``name`` for its later members: what they must
    share, and a built-in model's widths (they may differ, padded, but the padding costs the
    widest's work)."""
    if model not in SHARED_BY_MODEL:
        return name not in PER_MEMBER
    return name in SHARED_BY_MODEL[model] or name in WIDTHS_BY_MODEL[model] \
        or (model == "mlp" and models.is_layer_width(name))


_PROBED: dict[tuple[Any, ...], str | None] = {}


def why_not_functional(trainer: TrainerSpec, params: dict[str, Any],
                       base_dir: str | None = None, data_root: str | None = None
                       ) -> str | None:
    """Why this user model cannot be fused through ``torch.func`` (None: it can, and always
    for the built-in models, which are stacked directly). Probed once per structure: two
    copies take a training step and an evaluation under ``vmap``, which refuses random draws
    (dropout: members could not draw their lone trials' masks) and in-place writes to state
    that is not the model's parameters or buffers."""
    if trainer.model in models.MODELS:
        return None
    key = (trainer.model, base_dir, data_root, group_key(trainer, params))
    if key not in _PROBED:
        _PROBED[key] = _probe(trainer, params, base_dir, data_root)
    return _PROBED[key]


def _probe(trainer: TrainerSpec, params: dict[str, Any], base_dir: str | None,
           data_root: str | None) -> str | None:
    device, bundle = prepare(trainer, "val_loss", base_dir, data_root)
    config = models.full_config(trainer.model, params)
    try:
        built = [models.build(trainer.model, config, bundle.input_shape, bundle.n_outputs,
                              base_dir).to(device) for _ in range(2)]
        stacked = _FunctionalStack(built, device)
        x = bundle.x_train[:2]
        stacked.forward(x.expand(2, *x.shape), None).float().sum().backward()  # type: ignore[no-untyped-call]
        unused = [name for name, p in zip(stacked.names, stacked.params, strict=True)
                  if p.grad is None]
        if unused:  # the fused optimizer steps every parameter; torch's skips these
            return (f"model {trainer.model!r} cannot be fused through torch.func: parameter "
                    f"{unused[0]} takes no part in the output")
        stacked.training = False
        with torch.no_grad():
            stacked.forward(x.expand(2, *x.shape), None)
    except Exception as exc:  # user code: anything it raises means "train it alone"
        text = (str(exc).strip().splitlines() or [""])[0][:200]
        why = (" (it draws random numbers in training, e.g. dropout, which fused members could"
               " not draw as their lone trials do)" if "random" in text else "")
        return (f"model {trainer.model!r} cannot be fused through torch.func{why}: "
                f"{type(exc).__name__}: {text}")
    return None


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
    started: float = field(default_factory=time.perf_counter)
    epoch: int = 1              # the epoch it trains next
    progress: Progress = field(default_factory=Progress)
    outcome: TrainResult | BaseException | None = None


# ---------------------------------------------------------------------------------------------
# The stacked model and its optimizer


@dataclass(frozen=True)
class _Layer:
    """One linear or convolution layer of the shared structure, as the lone model has it."""

    conv: bool
    bias: bool = True
    kernel: int = 1             # convolutions: the square kernel, padded by kernel // 2
    pool: bool = False          # convolutions: a 2 x 2 max-pool after the activation
    norm: bool = False          # batch norm after it (1-d for linear, 2-d for convolutions)
    last: bool = False          # the output layer: no activation


def _structure(model: nn.Module) -> list[_Layer]:
    """The layers of a built-in MLP or CNN, read from the lone model's modules in order."""
    found: list[dict[str, Any]] = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            found.append({"conv": True, "kernel": int(module.kernel_size[0]),
                          "bias": module.bias is not None})
        elif isinstance(module, nn.Linear):
            found.append({"conv": False, "bias": module.bias is not None})
        elif isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
            found[-1]["norm"] = True
        elif isinstance(module, nn.MaxPool2d):
            found[-1]["pool"] = True
    found[-1]["last"] = True
    return [_Layer(**layer) for layer in found]


def _sizes(model: nn.Module) -> list[tuple[int, int]]:
    """(inputs, outputs) of each layer: features for linear layers, channels for convolutions."""
    return [(m.in_channels, m.out_channels) if isinstance(m, nn.Conv2d)
            else (m.in_features, m.out_features) for m in model.modules()
            if isinstance(m, nn.Conv2d | nn.Linear)]


class _StackedModel:
    """K MLPs (or K CNNs) of one structure as stacked tensors, in the lone model's parameter
    order. Widths (units, channels) may differ: each tensor is padded to the widest member.

    Layouts, member first: a linear weight ``[K, in, out]``; a convolution's ``[K, out,
    in * kernel^2]`` (viewed as ``groups=K`` weights for one ``conv2d`` over the members'
    channels side by side); biases and batch-norm scales ``[K, 1, out]``. All are 3-d, so the
    optimizer's per-member ``[K, 1, 1]`` columns fit every parameter.
    """

    def __init__(self, lone_models: Sequence[nn.Module], activation: nn.Module,
                 device: torch.device) -> None:
        self.k = len(lone_models)
        self.training = True  # False: batch norm uses its running statistics
        self.activation = activation
        self.structure = _structure(lone_models[0])
        self.convolutional = self.structure[0].conv
        self.flat_inputs = not self.convolutional  # an MLP takes each example flattened
        sizes = [_sizes(m) for m in lone_models]
        self.layer_in = [[s[layer][0] for s in sizes] for layer in range(len(self.structure))]
        self.layer_out = [[s[layer][1] for s in sizes] for layer in range(len(self.structure))]
        self.params: list[torch.Tensor] = []
        self.kinds: list[tuple[str, int]] = []    # ("weight" | "vector", layer) per parameter
        self.running: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.norm_layers: list[int] = []          # the layer of each ``running`` entry
        self.batches_tracked = [0] * self.k   # per member: members may join later
        lone = [[p.detach() for p in m.parameters()] for m in lone_models]
        # Per layer, where its weight, bias and batch-norm scale and shift are in ``params``,
        # in the order the lone model's parameters come.
        self.layers: list[dict[str, int]] = []
        for layer, spec in enumerate(self.structure):
            roles = ["weight", "bias"] if spec.bias else ["weight"]
            if spec.norm:
                roles += ["gamma", "beta"]
            self.layers.append({})
            for role in roles:
                kind = "weight" if role == "weight" else "vector"
                stacked = torch.zeros(self.k, *self._shape(kind, layer), device=device)
                position = len(self.params)
                for i in range(self.k):
                    self._view(stacked, i, kind, layer).copy_(self._stacked_layout(
                        lone[i][position], kind, layer))
                self.layers[-1][role] = position
                self.params.append(stacked.requires_grad_())
                self.kinds.append((kind, layer))
            if spec.norm:
                width = max(self.layer_out[layer])
                self.running.append((torch.zeros(self.k, 1, width, device=device),
                                     torch.ones(self.k, 1, width, device=device)))
                self.norm_layers.append(layer)
        self.hidden = [layer for layer, spec in enumerate(self.structure)
                       if not spec.conv and not spec.last]   # where dropout applies

    def _shape(self, kind: str, layer: int) -> tuple[int, int]:
        width = max(self.layer_out[layer])
        if kind == "vector":
            return (1, width)
        spec = self.structure[layer]
        if spec.conv:
            return (width, max(self.layer_in[layer]) * spec.kernel ** 2)
        return (max(self.layer_in[layer]), width)

    def _stacked_layout(self, lone: torch.Tensor, kind: str, layer: int) -> torch.Tensor:
        """A lone parameter in the stacked layout of its kind."""
        if kind == "vector" or self.structure[layer].conv:
            return lone
        return lone.t()

    def _view(self, stacked: torch.Tensor, i: int, kind: str, layer: int) -> torch.Tensor:
        """Member i's part of a stacked tensor (lone shape for convolutions, ``[in, out]``
        for linear weights)."""
        out = self.layer_out[layer][i]
        if kind == "vector":
            return stacked[i, 0, :out]
        spec = self.structure[layer]
        if spec.conv:
            k = spec.kernel
            return stacked[i].view(stacked.shape[1], -1, k, k)[:out, :self.layer_in[layer][i]]
        return stacked[i, :self.layer_in[layer][i], :out]

    def lone_view(self, stacked: torch.Tensor, index: int, i: int) -> torch.Tensor:
        """Member i's part of the stacked tensor of parameter ``index``, in the lone layout."""
        kind, layer = self.kinds[index]
        view = self._view(stacked, i, kind, layer)
        return view.t() if kind == "weight" and not self.structure[layer].conv else view

    def forward(self, h: torch.Tensor, noise: list[torch.Tensor] | None) -> torch.Tensor:
        """``h``: each member's batch, ``[K, batch, inputs]`` for an MLP, ``[K, batch, C, H,
        W]`` for a CNN (an expanded view when they share one) -> ``[K, batch, outputs]``."""
        batch = h.shape[1]
        if self.convolutional:  # the members' channels side by side: [batch, K * C, H, W]
            h = h.transpose(0, 1).reshape(batch, -1, *h.shape[3:])
        for layer, (spec, roles) in enumerate(zip(self.structure, self.layers, strict=True)):
            weight = self.params[roles["weight"]]
            bias = self.params[roles["bias"]] if "bias" in roles else None
            if spec.conv:
                h = nn.functional.conv2d(
                    h, weight.reshape(self.k * weight.shape[1], -1, spec.kernel, spec.kernel),
                    None if bias is None else bias.reshape(-1), padding=spec.kernel // 2,
                    groups=self.k)
            else:
                if h.dim() == 4:  # after the convolutions: each member's features, flattened
                    h = h.reshape(batch, self.k, -1).transpose(0, 1)
                h = torch.bmm(h, weight) if bias is None else torch.baddbmm(bias, h, weight)
            if spec.last:
                return h
            if spec.norm:
                h = self._normalise(h, layer, self.params[roles["gamma"]],
                                    self.params[roles["beta"]])
            h = self.activation(h)
            if spec.pool:
                h = nn.functional.max_pool2d(h, 2)
            if noise is not None and layer in self.hidden:
                h = h * noise[self.hidden.index(layer)]
        raise AssertionError("a model has an output layer")

    def _normalise(self, h: torch.Tensor, layer: int, gamma: torch.Tensor,
                   beta: torch.Tensor) -> torch.Tensor:
        running_mean, running_var = self.running[self.norm_layers.index(layer)]
        if self.structure[layer].conv:  # per channel, as nn.BatchNorm2d
            return nn.functional.batch_norm(
                h, running_mean.view(-1), running_var.view(-1), gamma.reshape(-1),
                beta.reshape(-1), self.training, _BN_MOMENTUM, _BN_EPS)
        if not self.training:
            return (h - running_mean) * torch.rsqrt(running_var + _BN_EPS) * gamma + beta
        mean = h.mean(1, keepdim=True)
        var = h.var(1, unbiased=False, keepdim=True)
        with torch.no_grad():
            n = h.shape[1]
            running_mean.lerp_(mean, _BN_MOMENTUM)
            running_var.lerp_(var * (n / max(1, n - 1)), _BN_MOMENTUM)
        return (h - mean) * torch.rsqrt(var + _BN_EPS) * gamma + beta

    def l1_penalty(self) -> torch.Tensor:
        """Per member: the sum of |weight| over its linear and convolution layers ([K])."""
        return sum(p.abs().sum((1, 2)) for p, (kind, _) in zip(self.params, self.kinds,
                                                                  strict=True)
                   if kind == "weight")  # type: ignore[return-value]

    def keep(self, rows: list[int]) -> None:
        """Only members ``rows`` go on (the others left: pruned, failed, stopped); the padding
        shrinks to the widest member left."""
        self.k = len(rows)
        self.layer_in = [[sizes[i] for i in rows] for sizes in self.layer_in]
        self.layer_out = [[sizes[i] for i in rows] for sizes in self.layer_out]
        self.params = [self.select(p.detach(), rows, index).requires_grad_()
                       for index, p in enumerate(self.params)]
        self.running = [(self._resize(m.index_select(0, self._rows(rows, m)), "vector", layer),
                         self._resize(v.index_select(0, self._rows(rows, v)), "vector", layer))
                        for layer, (m, v) in zip(self.norm_layers, self.running, strict=True)]
        self.batches_tracked = [self.batches_tracked[i] for i in rows]

    def add(self, lone_models: Sequence[nn.Module]) -> None:
        """New members join at an epoch boundary (rows after the others), from their lone
        models' initial weights; the padding grows to the widest member."""
        for model in lone_models:
            for layer, (size_in, size_out) in enumerate(_sizes(model)):
                self.layer_in[layer].append(size_in)
                self.layer_out[layer].append(size_out)
        old = self.k
        self.k += len(lone_models)
        lone = [[p.detach() for p in m.parameters()] for m in lone_models]
        params = []
        for index, p in enumerate(self.params):
            grown = self.grow(p.detach(), index)
            kind, layer = self.kinds[index]
            for j, weights_ in enumerate(lone):
                self._view(grown, old + j, kind, layer).copy_(
                    self._stacked_layout(weights_[index], kind, layer))
            params.append(grown.requires_grad_())
        self.params = params
        self.running = [(self._resize(m, "vector", layer, 0.0),
                         self._resize(v, "vector", layer, 1.0))
                        for layer, (m, v) in zip(self.norm_layers, self.running, strict=True)]
        self.batches_tracked += [0] * len(lone_models)

    def grow(self, t: torch.Tensor, index: int) -> torch.Tensor:
        """A tensor shaped as parameter ``index`` for the members before ``add``: zero rows
        for the new ones, zero padding to the new widths (the optimizer grows its state so)."""
        kind, layer = self.kinds[index]
        return self._resize(t, kind, layer)

    def select(self, t: torch.Tensor, rows: list[int], index: int) -> torch.Tensor:
        """Rows ``rows`` of a tensor shaped as parameter ``index``, cut to the new padding
        (``keep`` must have set the sizes; the optimizer cuts its state with this too)."""
        kind, layer = self.kinds[index]
        return self._resize(t.index_select(0, self._rows(rows, t)), kind, layer)

    @staticmethod
    def _rows(rows: list[int], like: torch.Tensor) -> torch.Tensor:
        return torch.tensor(rows, device=like.device)

    def _resize(self, t: torch.Tensor, kind: str, layer: int, fill: float = 0.0
                ) -> torch.Tensor:
        """``t`` (rows for the first members) in the current sizes: cut or padded with
        ``fill`` to the widest member, rows after its own filled."""
        shape = self._shape(kind, layer)
        spec = self.structure[layer]
        if kind == "weight" and spec.conv:  # pad and cut per channel, not the flat row
            k2 = spec.kernel ** 2
            old = t.view(t.shape[0], t.shape[1], -1, k2)
            out = torch.full((self.k, shape[0], shape[1] // k2, k2), fill, dtype=t.dtype,
                             device=t.device)
            rows, outs, ins = (min(a, b) for a, b in zip(old.shape[:3], out.shape[:3],
                                                           strict=True))
            out[:rows, :outs, :ins] = old[:rows, :outs, :ins]
            return out.view(self.k, *shape)
        out = torch.full((self.k, *shape), fill, dtype=t.dtype, device=t.device)
        rows, first, second = (min(a, b) for a, b in zip(t.shape, out.shape, strict=True))
        out[:rows, :first, :second] = t[:rows, :first, :second]
        return out

    def copy_to(self, i: int, model: nn.Module) -> None:
        """Member i's weights and batch-norm statistics into its lone model (checkpoints)."""
        with torch.no_grad():
            for index, p in enumerate(model.parameters()):
                p.copy_(self.lone_view(self.params[index], index, i))
            norms = [m for m in model.modules()
                     if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d)]
            for norm, (mean, var), layer in zip(norms, self.running, self.norm_layers,
                                                strict=True):
                width = self.layer_out[layer][i]
                norm.running_mean.copy_(mean[i, 0, :width])  # type: ignore[union-attr]
                norm.running_var.copy_(var[i, 0, :width])  # type: ignore[union-attr]
                norm.num_batches_tracked.fill_(  # type: ignore[union-attr]
                    self.batches_tracked[i])


class _FunctionalStack:
    """K user models of one structure through ``torch.func``: one ``vmap`` of
    ``functional_call`` over the members' stacked parameters and buffers runs all K.

    The same interface as ``_StackedModel``. Each parameter is stacked member-first and
    flattened, ``[K, 1, numel]`` (3-d as ``_StackedModel``'s, so the optimizer's per-member
    columns fit), and viewed in its own shape for the call; buffers (batch-norm statistics)
    are ``[K, *shape]`` and updated in place by the call, as the lone model updates its own.
    Members share every parameter shape (``group_key``: all but ``PER_MEMBER``).
    """

    flat_inputs = False   # each member gets the examples as its lone model does

    def __init__(self, lone_models: Sequence[nn.Module], device: torch.device) -> None:
        self.hidden: list[int] = []  # no dropout from outside (random draws train alone)
        self.layer_out: list[list[int]] = []
        import copy

        self.base = copy.deepcopy(lone_models[0])  # the module each call runs
        named = list(self.base.named_parameters())
        self.names = [name for name, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.weights = [p.ndim > 1 for _, p in named]  # L1's, as the lone loop's penalty
        self.buffer_names = [name for name, _ in self.base.named_buffers()]
        self.params = [torch.empty(0, 1, p.numel(), device=device) for _, p in named]
        self.buffers = [torch.empty(0, *b.shape, dtype=b.dtype, device=device)
                        for b in self.base.buffers()]
        self.k = 0
        self.training = True
        self.batches_tracked: list[int] = []  # in the buffers here; kept for the interface
        self.add(lone_models)

    def add(self, lone_models: Sequence[nn.Module]) -> None:
        """New members join (rows after the others) from their lone models' initial state."""
        for model in lone_models:
            shapes = [p.shape for p in model.parameters()]
            if shapes != self.shapes:
                raise ValueError(f"a fused user model's members must have equal parameter "
                                 f"shapes: {shapes} against {self.shapes}")
        params = [list(m.parameters()) for m in lone_models]
        buffers = [list(m.buffers()) for m in lone_models]
        self.params = [torch.cat([p.detach(), *(ps[index].detach().reshape(1, 1, -1)
                                                for ps in params)]).requires_grad_()
                       for index, p in enumerate(self.params)]
        self.buffers = [torch.cat([b, *(bs[index].unsqueeze(0) for bs in buffers)])
                        for index, b in enumerate(self.buffers)]
        self.k += len(lone_models)
        self.batches_tracked += [0] * len(lone_models)

    def forward(self, h: torch.Tensor, noise: list[torch.Tensor] | None) -> torch.Tensor:
        """``h``: each member's batch, ``[K, batch, *input]`` -> ``[K, batch, outputs]``."""
        from torch.func import functional_call, vmap

        self.base.train(self.training)
        params = {name: p.view(self.k, *shape)
                  for name, p, shape in zip(self.names, self.params, self.shapes, strict=True)}
        buffers = dict(zip(self.buffer_names, self.buffers, strict=True))

        def one(params_: dict[str, torch.Tensor], buffers_: dict[str, torch.Tensor],
                x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = functional_call(self.base, (params_, buffers_), (x,))
            return out

        out: torch.Tensor = vmap(one, randomness="error")(params, buffers, h)
        return out

    def l1_penalty(self) -> torch.Tensor:
        """Per member: the sum of |weight| over its parameters of two or more dimensions."""
        return sum(p.abs().sum((1, 2)) for p, weight in zip(self.params, self.weights,
                                                             strict=True)
                   if weight)  # type: ignore[return-value]

    def keep(self, rows: list[int]) -> None:
        """Only members ``rows`` go on."""
        self.k = len(rows)
        self.params = [self.select(p.detach(), rows, 0).requires_grad_() for p in self.params]
        self.buffers = [self.select(b, rows, 0) for b in self.buffers]
        self.batches_tracked = [self.batches_tracked[i] for i in rows]

    def grow(self, t: torch.Tensor, index: int) -> torch.Tensor:
        """``t`` with zero rows for the members ``add`` brought in (the optimizer's state)."""
        return torch.cat([t, t.new_zeros(self.k - len(t), *t.shape[1:])])

    def select(self, t: torch.Tensor, rows: list[int], index: int) -> torch.Tensor:
        return t.index_select(0, torch.tensor(rows, device=t.device))

    def lone_view(self, stacked: torch.Tensor, index: int, i: int) -> torch.Tensor:
        """Member i's part of a tensor shaped as parameter ``index``, in the lone shape."""
        return stacked[i, 0].view(self.shapes[index])

    def copy_to(self, i: int, model: nn.Module) -> None:
        """Member i's parameters and buffers into its lone model (checkpoints)."""
        with torch.no_grad():
            for index, p in enumerate(model.parameters()):
                p.copy_(self.lone_view(self.params[index], index, i))
            for buffer, stacked in zip(model.buffers(), self.buffers, strict=True):
                buffer.copy_(stacked[i])


_Stack = _StackedModel | _FunctionalStack


def _grad(p: torch.Tensor) -> torch.Tensor:
    assert p.grad is not None  # every member's parameter takes part in its loss
    return p.grad


class _StackedOptimizer:
    """SGD, Adam, AdamW or RMSprop over stacked parameters, one hyperparameter set per member.

    The update is torch's (``torch.optim``'s single-tensor form), written with per-member
    tensors of shape ``[K, 1, 1]``; the scalars that torch computes in double precision
    (bias corrections, step sizes) are computed per member on the host the same way.
    """

    def __init__(self, kind: str, params: list[torch.Tensor], configs: list[dict[str, Any]],
                 nesterov: bool) -> None:
        self.kind = kind
        self.params = params
        self.configs = configs
        self.nesterov = nesterov
        self.steps = [0] * len(configs)   # per member: members may join later
        self.lrs = [float(c["lr"]) for c in configs]
        names = {"sgd": ("momentum_buffer",), "adam": ("exp_avg", "exp_avg_sq"),
                 "adamw": ("exp_avg", "exp_avg_sq"),
                 "rmsprop": ("square_avg", "momentum_buffer")}[kind]
        self.state = {name: [torch.zeros_like(p) for p in params] for name in names}
        self.scratch: list[tuple[torch.Tensor, torch.Tensor]] = []

    def _column(self, values: Sequence[float]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float32,
                            device=self.params[0].device).view(-1, 1, 1)

    def _each(self, name: str) -> list[float]:
        return [float(c[name]) for c in self.configs]

    def keep(self, rows: list[int], model: _Stack) -> None:
        """Follows ``_StackedModel.keep`` (called after it)."""
        self.params = model.params
        self.configs = [self.configs[i] for i in rows]
        self.lrs = [self.lrs[i] for i in rows]
        self.steps = [self.steps[i] for i in rows]
        self.state = {name: [model.select(s, rows, index) for index, s in enumerate(states)]
                      for name, states in self.state.items()}

    def add(self, configs: list[dict[str, Any]], model: _Stack) -> None:
        """Follows ``_StackedModel.add``: the new members start with empty state (their rates
        as ``__init__`` takes them, until the caller sets ``lrs``)."""
        self.params = model.params
        self.configs = [*self.configs, *configs]
        self.lrs = [*self.lrs, *(float(c["lr"]) for c in configs)]
        self.steps = [*self.steps, *[0] * len(configs)]
        self.state = {name: [model.grow(s, index) for index, s in enumerate(states)]
                      for name, states in self.state.items()}

    @torch.no_grad()
    def step(self) -> None:
        """One update of every member, in place where torch's is (the gradients are spent)."""
        self.steps = [t + 1 for t in self.steps]
        decays = self._each("weight_decay")
        decay = self._column(decays) if any(decays) else None
        if self.kind == "sgd":
            momenta = self._each("momentum")
            lr, momentum = self._columns(self.lrs, momenta)
            nesterov = [self.nesterov and m > 0 for m in momenta]
            for p, buf in zip(self.params, self.state["momentum_buffer"], strict=True):
                g = _grad(p)
                if decay is not None:
                    g.addcmul_(p, decay)
                buf.mul_(momentum).add_(g)
                if all(nesterov):
                    g.addcmul_(buf, momentum)
                elif any(nesterov):
                    g = torch.where(self._column([float(n) for n in nesterov]) > 0,
                                    g.addcmul(buf, momentum), buf)
                else:
                    g = buf
                p.sub_(g.mul_(lr) if g is not buf else torch.mul(buf, lr, out=_grad(p)))
        elif self.kind in ("adam", "adamw"):
            beta1, beta2 = self._each("beta1"), self._each("beta2")
            one_minus_beta1, beta2_t, one_minus_beta2, step_size, bias2_sqrt, shrink = \
                self._columns([1 - b for b in beta1], beta2, [1 - b for b in beta2],
                              [lr_ / (1 - b ** t) for lr_, b, t in zip(self.lrs, beta1,
                                                                        self.steps,
                                                                        strict=True)],
                              [(1 - b ** t) ** 0.5 for b, t in zip(beta2, self.steps,
                                                                   strict=True)],
                              [1 - lr_ * d for lr_, d in zip(self.lrs, decays, strict=True)])
            for p, m, v, (a, b) in zip(self.params, self.state["exp_avg"],
                                       self.state["exp_avg_sq"], self._scratch(), strict=True):
                g = _grad(p)
                if self.kind == "adamw":
                    if decay is not None:
                        p.mul_(shrink)
                elif decay is not None:
                    g.addcmul_(p, decay)
                m.lerp_(g, one_minus_beta1)
                torch.mul(g, one_minus_beta2, out=a)
                v.mul_(beta2_t).addcmul_(a, g)  # addcmul's order: (c * g) * g
                torch.sqrt(v, out=a).div_(bias2_sqrt).add_(_ADAM_EPS)
                torch.mul(m, step_size, out=b).neg_()
                p.addcdiv_(b, a)
        else:  # rmsprop
            lr, momentum = self._columns(self.lrs, self._each("momentum"))
            for p, square, buf, (a, _) in zip(self.params, self.state["square_avg"],
                                              self.state["momentum_buffer"], self._scratch(),
                                              strict=True):
                g = _grad(p)
                if decay is not None:
                    g.addcmul_(p, decay)
                square.mul_(_RMSPROP_ALPHA).addcmul_(g, g, value=1 - _RMSPROP_ALPHA)
                buf.mul_(momentum).addcdiv_(g, torch.sqrt(square, out=a).add_(_RMSPROP_EPS))
                p.sub_(torch.mul(buf, lr, out=a))

    def _scratch(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Two work tensors per parameter, kept between steps: a large temporary made anew on
        every step costs more in page faults than its arithmetic."""
        if len(self.scratch) != len(self.params) or any(
                a.shape != p.shape for (a, _), p in zip(self.scratch, self.params, strict=True)):
            self.scratch = [(torch.empty_like(p), torch.empty_like(p)) for p in self.params]
        return self.scratch

    def _columns(self, *values: Sequence[float]) -> list[torch.Tensor]:
        """Per-member scalars as ``[K, 1, 1]`` tensors, made in one transfer to the device."""
        table = torch.tensor(values, dtype=torch.float32).view(len(values), -1, 1, 1)
        return list(table.to(self.params[0].device, non_blocking=True).unbind(0))

    def lone_state(self, i: int, model: _Stack,
                   lone_params: Sequence[torch.Tensor]) -> dict[torch.Tensor, dict[str, Any]]:
        """Member i's optimizer state as ``torch.optim`` keeps it, for its checkpoint."""
        step = torch.tensor(float(self.steps[i]))
        config = self.configs[i]
        out: dict[torch.Tensor, dict[str, Any]] = {}
        for index, p in enumerate(lone_params):
            part = {name: model.lone_view(states[index], index, i).clone()
                    for name, states in self.state.items()}
            if self.kind == "sgd":
                if float(config["momentum"]) == 0:
                    part["momentum_buffer"] = None  # type: ignore[assignment]
            elif self.kind == "rmsprop":
                part["step"] = step.clone()
                if float(config["momentum"]) == 0:
                    del part["momentum_buffer"]
            else:
                part["step"] = step.clone()
            out[p] = part
        return out


# ---------------------------------------------------------------------------------------------
# Training a group


Refill = Callable[[int], list[MemberJob]]


def run_group(trainer: TrainerSpec, jobs: list[MemberJob], *, metric: str,
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
                run_group(trainer, part, metric=metric, direction=direction,
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
                   Schedule(config, optimizer, trainer.epochs, minimize), dropout, cohort)


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

    def stack(group: list[_Member]) -> tuple[_Stack, _StackedOptimizer]:
        lone_models = [m.model for m in group]
        model: _Stack = (
            _StackedModel(lone_models, models.activation(first["activation"]), device)
            if trainer.model in SHARED_BY_MODEL else _FunctionalStack(lone_models, device))
        return model, _StackedOptimizer(first["optimizer"], model.params,
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
    last = epoch == min(trainer.epochs, member.job.stop_after or trainer.epochs)
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


def _save_member(member: _Member, stacked: _Stack, optimizer: _StackedOptimizer,
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


def _dropout_noise(active: list[_Member], stacked: _Stack, batch: int,
                   device: torch.device) -> list[torch.Tensor] | None:
    """Per hidden layer, each member's dropout mask scaled by 1/(1-p), drawn as the lone
    trial's ``nn.Dropout`` draws it (``bernoulli_`` then ``div_``), zero over the padding."""
    if not stacked.hidden:
        return None
    rates = [float(m.config["dropout"]) for m in active]
    if not any(rates):
        return None
    noise = []
    for layer in stacked.hidden:
        widths = stacked.layer_out[layer]
        masks = []
        for member, p, width in zip(active, rates, widths, strict=True):
            mask = (torch.empty(batch, width, device=device)
                    .bernoulli_(1 - p, generator=member.dropout_generator).div_(1 - p) if p
                    else torch.ones(batch, width, device=device))
            masks.append(nn.functional.pad(mask, (0, max(widths) - width)))
        noise.append(torch.stack(masks))
    return noise


def _train_epoch(trainer: TrainerSpec, stacked: _Stack, optimizer: _StackedOptimizer,
                 active: list[_Member], bundle: DataBundle, autocast: Any) -> list[float]:
    """One pass over the training data, each member in its lone trial's order (one order per
    cohort); each member's mean loss."""
    x_fit, y_fit, device = bundle.x_train, bundle.y_train, bundle.x_train.device
    batch_size = max(1, int(active[0].config["batch_size"]))
    l1 = torch.tensor([float(m.config["l1"]) for m in active], device=device)
    clip = torch.tensor([float(m.config["grad_clip"]) for m in active], device=device)
    use_l1, use_clip = bool(l1.any()), bool(clip.any())
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
    for start in range(0, n_train, batch_size):
        size = min(batch_size, n_train - start)
        if size < 2 and n_train > 1:
            continue  # as the lone loop: a batch of one breaks batch norm
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
        noise = _dropout_noise(active, stacked, size, device)
        with autocast():
            out = stacked.forward(x, noise).float()
            if bundle.task == "classification":
                losses = nn.functional.cross_entropy(
                    out.permute(1, 2, 0), y.t(), reduction="none").mean(0)
            else:
                losses = ((out.squeeze(-1) - y) ** 2).mean(1)
            if use_l1:
                losses = losses + l1 * stacked.l1_penalty()
        for p in stacked.params:  # zeroed in place: the buffers are reused, not made anew
            if p.grad is not None:
                p.grad.zero_()
        losses.sum().backward()  # type: ignore[no-untyped-call]
        if use_clip:
            _clip_per_member(stacked.params, clip)
        optimizer.step()
        stacked.batches_tracked = [n + 1 for n in stacked.batches_tracked]
        loss_sum += losses.detach()
        batches += 1
    values: list[float] = (loss_sum / max(1, batches)).tolist()  # the epoch's one host sync
    return values


def _clip_per_member(params: list[torch.Tensor], clip: torch.Tensor) -> None:
    """``clip_grad_norm_`` for each member over its own gradients; 0 means no clipping."""
    with torch.no_grad():
        norms = torch.stack([p.grad.pow(2).sum((1, 2)) for p in params  # type: ignore[union-attr]
                             ]).sum(0).sqrt()
        coef = torch.where(clip > 0, (clip / (norms + 1e-6)).clamp(max=1.0), 1.0)
        for p in params:
            p.grad.mul_(coef.view(-1, 1, 1))  # type: ignore[union-attr]


def _evaluate(stacked: _Stack, bundle: DataBundle, batch_size: int,
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
