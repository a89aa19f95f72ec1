"""User models (``trainer.model: tests/user_models.py:NAME``) for the fused-trial tests: one
that ``torch.func`` can fuse (batch-norm buffers included) and two it cannot."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


class Normed(nn.Module):
    """Linear, batch norm, ReLU, a skip connection and an output layer, sized by ``hidden``.

    No bias before the batch norm (which cancels it): that bias's gradient is zero up to float
    rounding, and Adam scales any nonzero gradient to a step of about lr, so its path would
    follow rounding noise, which differs between a fused and a lone trial (and between
    machines).
    """

    def __init__(self, n_inputs: int, hidden: int, n_outputs: int) -> None:
        super().__init__()
        self.inp = nn.Linear(n_inputs, hidden, bias=False)
        self.norm = nn.BatchNorm1d(hidden)
        self.mid = nn.Linear(hidden, hidden, bias=False)
        self.out = nn.Linear(hidden, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.norm(self.inp(x.flatten(1))))
        return self.out(h + torch.tanh(self.mid(h)))


def build(params: dict[str, Any], input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
    return Normed(math.prod(input_shape), int(params.get("hidden", 16)), n_outputs)


def with_dropout(params: dict[str, Any], input_shape: tuple[int, ...], n_outputs: int
                 ) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 16), nn.ReLU(),
                         nn.Dropout(0.3), nn.Linear(16, n_outputs))


class Itemising(nn.Module):
    """Reads a tensor's value on the host in its forward pass, which ``vmap`` refuses."""

    def __init__(self, n_inputs: int, n_outputs: int) -> None:
        super().__init__()
        self.out = nn.Linear(n_inputs, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.out(x.flatten(1))
        return h / 2 if h.abs().max().item() > 1e6 else h


def itemising(params: dict[str, Any], input_shape: tuple[int, ...], n_outputs: int
              ) -> nn.Module:
    return Itemising(math.prod(input_shape), n_outputs)


class Unused(nn.Module):
    """Has a layer its forward pass never calls, so that layer gets no gradient."""

    def __init__(self, n_inputs: int, n_outputs: int) -> None:
        super().__init__()
        self.out = nn.Linear(n_inputs, n_outputs)
        self.spare = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(x.flatten(1))


def unused_layer(params: dict[str, Any], input_shape: tuple[int, ...], n_outputs: int
                 ) -> nn.Module:
    return Unused(math.prod(input_shape), n_outputs)
