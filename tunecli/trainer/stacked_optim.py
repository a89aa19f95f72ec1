"""SGD, Adam, AdamW and RMSprop stepping a fused group's stacked parameters, each member with
its own hyperparameters. torch's optimizers step one set of hyperparameters per parameter
group and cannot address a member's slice of a stacked tensor, hence this one; its equivalence
with torch's is what ``tests/test_fused.py`` checks member by member.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from tunecli.trainer.stacked import Stack

__all__ = ["StackedOptimizer"]

_ADAM_EPS, _RMSPROP_EPS, _RMSPROP_ALPHA = 1e-8, 1e-8, 0.99


def _grad(p: torch.Tensor) -> torch.Tensor:
    assert p.grad is not None  # every member's parameter takes part in its loss
    return p.grad


class StackedOptimizer:
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

    def keep(self, rows: list[int], model: Stack) -> None:
        """Follows ``StackedModel.keep`` (called after it)."""
        self.params = model.params
        self.configs = [self.configs[i] for i in rows]
        self.lrs = [self.lrs[i] for i in rows]
        self.steps = [self.steps[i] for i in rows]
        self.state = {name: [model.select(s, rows, index) for index, s in enumerate(states)]
                      for name, states in self.state.items()}

    def add(self, configs: list[dict[str, Any]], model: Stack) -> None:
        """Follows ``StackedModel.add``: the new members start with empty state (their rates
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
            self._sgd(decay)
        elif self.kind in ("adam", "adamw"):
            self._adam(decays, decay)
        else:
            self._rmsprop(decay)

    def _sgd(self, decay: torch.Tensor | None) -> None:
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

    def _adam(self, decays: list[float], decay: torch.Tensor | None) -> None:
        """Adam, or AdamW (decoupled decay: the weights shrink before the step)."""
        beta1, beta2 = self._each("beta1"), self._each("beta2")
        one_minus_beta1, beta2_t, one_minus_beta2, step_size, bias2_sqrt, shrink = \
            self._columns([1 - b for b in beta1], beta2, [1 - b for b in beta2],
                          [lr_ / (1 - b ** t) for lr_, b, t in zip(self.lrs, beta1,
                                                                    self.steps,
                                                                    strict=True)],
                          [(1 - b ** t) ** 0.5 for b, t in zip(beta2, self.steps,
                                                               strict=True)],
                          [1 - lr_ * d for lr_, d in zip(self.lrs, decays, strict=True)])
        decoupled = self.kind == "adamw"
        for p, m, v, (a, b) in zip(self.params, self.state["exp_avg"],
                                   self.state["exp_avg_sq"], self._scratch(), strict=True):
            g = _grad(p)
            if decay is not None:
                if decoupled:
                    p.mul_(shrink)
                else:
                    g.addcmul_(p, decay)
            m.lerp_(g, one_minus_beta1)
            torch.mul(g, one_minus_beta2, out=a)
            v.mul_(beta2_t).addcmul_(a, g)  # addcmul's order: (c * g) * g
            torch.sqrt(v, out=a).div_(bias2_sqrt).add_(_ADAM_EPS)
            torch.mul(m, step_size, out=b).neg_()
            p.addcdiv_(b, a)

    def _rmsprop(self, decay: torch.Tensor | None) -> None:
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

    def lone_state(self, i: int, model: Stack,
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
