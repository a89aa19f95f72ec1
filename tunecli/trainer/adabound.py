"""AdaBound and AMSBound (Luo, Xiong, Liu & Sun, ICLR 2019): Adam whose per-weight step sizes
are clipped into bounds that close, as training goes on, around one final SGD learning rate.

Written here because the authors' package (``adabound`` on PyPI) has had no release since 2019
and uses PyTorch calls that have since been removed. The update is the authors' reference code
(github.com/Luolc/AdaBound), which differs from the paper's Algorithm 2 in two documented ways
that every published comparison used: Adam's bias corrections are applied, and there is no
extra ``1/sqrt(t)`` decay. As in that code, a schedule that lowers ``lr`` lowers ``final_lr`` in
proportion. ``tests/test_adabound.py`` checks the update against the formulas, written out
independently.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

__all__ = ["AdaBound"]


class AdaBound(torch.optim.Optimizer):
    """``amsbound=True`` keeps the largest second moment seen (AMSGrad's fix), as AMSBound."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), final_lr: float = 0.1,
                 gamma: float = 1e-3, eps: float = 1e-8, weight_decay: float = 0.0,
                 amsbound: bool = False) -> None:
        if lr <= 0 or final_lr <= 0 or gamma <= 0 or eps < 0 or weight_decay < 0:
            raise ValueError("lr, final_lr and gamma must be > 0; eps, weight_decay >= 0")
        if not all(0 <= b < 1 for b in betas):
            raise ValueError(f"betas must be in [0, 1), not {betas}")
        defaults = {"lr": lr, "betas": betas, "final_lr": final_lr, "gamma": gamma,
                    "eps": eps, "weight_decay": weight_decay, "amsbound": amsbound}
        super().__init__(params, defaults)
        self.base_lrs = [group["lr"] for group in self.param_groups]

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("amsbound", False)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group, base_lr in zip(self.param_groups, self.base_lrs, strict=True):
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if grad.is_sparse:
                    raise RuntimeError("AdaBound does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                    if group["amsbound"]:
                        state["max_exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                if group["weight_decay"]:
                    grad = grad.add(p, alpha=group["weight_decay"])
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                second = exp_avg_sq
                if group["amsbound"]:
                    torch.maximum(state["max_exp_avg_sq"], exp_avg_sq,
                                  out=state["max_exp_avg_sq"])
                    second = state["max_exp_avg_sq"]
                denom = second.sqrt().add_(group["eps"])
                step_size = group["lr"] * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
                final_lr = group["final_lr"] * group["lr"] / base_lr
                lower = final_lr * (1 - 1 / (group["gamma"] * t + 1))
                upper = final_lr * (1 + 1 / (group["gamma"] * t))
                steps = torch.full_like(denom, step_size).div_(denom).clamp_(lower, upper)
                p.sub_(steps.mul_(exp_avg))
        return loss
