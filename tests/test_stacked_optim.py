"""The batched optimizer beside torch's own: K members stacked in one tensor, each stepped
with its own hyperparameters, equal to K torch optimizers stepping the members alone."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tunecli.trainer.fusable import FUSABLE_OPTIMIZERS
from tunecli.trainer.models import full_config
from tunecli.trainer.optim import make_optimizer
from tunecli.trainer.stacked_optim import StackedOptimizer

MEMBERS: list[dict[str, Any]] = [
    {"lr": 0.01, "momentum": 0.9, "beta1": 0.8, "weight_decay": 1e-3},
    {"lr": 0.003, "momentum": 0.0, "beta2": 0.99},
    {"lr": 0.05, "momentum": 0.5, "weight_decay": 1e-2},
]


@pytest.mark.parametrize(("optimizer", "nesterov"), [
    *((name, False) for name in FUSABLE_OPTIMIZERS), ("sgd", True)])  # Nesterov is SGD's
def test_each_member_steps_as_torch_steps_it_alone(optimizer: str, nesterov: bool) -> None:
    torch.manual_seed(0)
    configs = [full_config("mlp", {**m, "optimizer": optimizer, "nesterov": nesterov})
               for m in MEMBERS]
    start = [torch.randn(4, 5) for _ in configs]
    lone = [torch.nn.Parameter(w.clone()) for w in start]
    lone_optimizers = [make_optimizer(c, [p], torch.device("cpu")) for c, p in zip(
        configs, lone, strict=True)]
    stacked = torch.nn.Parameter(torch.stack(start))
    batched = StackedOptimizer(optimizer, [stacked], configs, nesterov)
    for _ in range(6):
        grads = [torch.randn(4, 5) for _ in configs]
        for p, g, opt in zip(lone, grads, lone_optimizers, strict=True):
            p.grad = g.clone()
            opt.step()
        stacked.grad = torch.stack(grads)
        batched.step()
    for k, p in enumerate(lone):
        assert torch.allclose(stacked.detach()[k], p.detach(), rtol=1e-5, atol=1e-6), k
