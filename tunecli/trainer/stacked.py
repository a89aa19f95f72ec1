"""K models of one structure as one: stacked tensors a fused group trains in one step.

Why: a small model leaves the machine idle; one step is a few tiny matrix products plus Python
and optimizer overhead. Stacking the K members' weights (``[K, in, out]``, one batched matmul
per linear layer; one ``groups=K`` convolution over the members' channels side by side per
convolution layer) trains all K for about the price of one. Widths are padded to the widest
member; the padding starts at zero and every activation maps 0 to 0, so padded units and
channels stay zero, get zero gradients and change nothing (batch norm included: a zero column
normalises to zero). A user model (``module:function``) is stacked through ``torch.func``
instead (``FunctionalStack``: one ``vmap`` of ``functional_call``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["FunctionalStack", "Stack", "StackedModel"]

_BN_EPS, _BN_MOMENTUM = 1e-5, 0.1      # nn.BatchNorm1d's defaults, as the lone model uses


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


class StackedModel:
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


class FunctionalStack:
    """K user models of one structure through ``torch.func``: one ``vmap`` of
    ``functional_call`` over the members' stacked parameters and buffers runs all K.

    The same interface as ``StackedModel``. Each parameter is stacked member-first and
    flattened, ``[K, 1, numel]`` (3-d as ``StackedModel``'s, so the optimizer's per-member
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


Stack = StackedModel | FunctionalStack
