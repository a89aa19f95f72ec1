"""Optimizers and learning-rate schedules: name -> factory, the one place one is added.

The hyperparameter table (``hyperparams``) takes its choices from these registries, so a new
entry is accepted by validation, listed in README's table and covered by the parametrised
tests with no other change. Torch is imported inside the factories: importing this module is
free for ``validate`` and ``report``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tunecli.errors import SpecError

if TYPE_CHECKING:
    import torch

__all__ = ["OPTIMIZERS", "SCHEDULES", "Schedule", "make_optimizer"]

OptimizerFactory = Callable[[dict[str, Any], Any, dict[str, Any]], "torch.optim.Optimizer"]


def _sgd(config: dict[str, Any], parameters: Any, fused: dict[str, Any]) -> Any:
    import torch

    momentum = float(config["momentum"])
    return torch.optim.SGD(parameters, lr=float(config["lr"]), momentum=momentum,
                           weight_decay=float(config["weight_decay"]),
                           nesterov=bool(config["nesterov"]) and momentum > 0, **fused)


def _adam_like(cls_name: str) -> OptimizerFactory:
    def factory(config: dict[str, Any], parameters: Any, fused: dict[str, Any]) -> Any:
        import torch

        cls = getattr(torch.optim, cls_name)
        return cls(parameters, lr=float(config["lr"]),
                   betas=(float(config["beta1"]), float(config["beta2"])),
                   weight_decay=float(config["weight_decay"]),
                   amsgrad=bool(config["amsgrad"]), **fused)
    return factory


def _adabound(config: dict[str, Any], parameters: Any, fused: dict[str, Any]) -> Any:
    from tunecli.trainer.adabound import AdaBound

    return AdaBound(parameters, lr=float(config["lr"]),
                    betas=(float(config["beta1"]), float(config["beta2"])),
                    final_lr=float(config["final_lr"]), gamma=float(config["bound_gamma"]),
                    weight_decay=float(config["weight_decay"]),
                    amsbound=bool(config["amsgrad"]))


def _rmsprop(config: dict[str, Any], parameters: Any, fused: dict[str, Any]) -> Any:
    import torch

    return torch.optim.RMSprop(parameters, lr=float(config["lr"]),
                               momentum=float(config["momentum"]),
                               weight_decay=float(config["weight_decay"]))


def _plain(cls_name: str) -> OptimizerFactory:
    def factory(config: dict[str, Any], parameters: Any, fused: dict[str, Any]) -> Any:
        import torch

        return getattr(torch.optim, cls_name)(parameters, lr=float(config["lr"]),
                                              weight_decay=float(config["weight_decay"]))
    return factory


OPTIMIZERS: dict[str, OptimizerFactory] = {
    "sgd": _sgd,
    "adam": _adam_like("Adam"),
    "adamw": _adam_like("AdamW"),
    "rmsprop": _rmsprop,
    "adagrad": _plain("Adagrad"),
    "adadelta": _plain("Adadelta"),
    "adabound": _adabound,
}
_FUSED = ("sgd", "adam", "adamw")  # torch has fused CUDA kernels for these


def make_optimizer(config: dict[str, Any], parameters: Any, device: Any) -> Any:
    name = config["optimizer"]
    if name not in OPTIMIZERS:
        raise SpecError(f"unknown optimizer {name!r}", path="space.optimizer",
                        fix=f"Use one of: {', '.join(OPTIMIZERS)}.")
    fused = {"fused": True} if device.type == "cuda" and name in _FUSED else {}
    return OPTIMIZERS[name](config, parameters, fused)


ScheduleFactory = Callable[[dict[str, Any], Any, int, bool], Any]


def _none(config: dict[str, Any], optimizer: Any, epochs: int, minimize: bool) -> Any:
    return None


def _step(config: dict[str, Any], optimizer: Any, epochs: int, minimize: bool) -> Any:
    import torch

    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, int(config["step_size"])),
                                           gamma=float(config["gamma"]))


def _cosine(config: dict[str, Any], optimizer: Any, epochs: int, minimize: bool) -> Any:
    import torch

    warmup = int(config["warmup_epochs"])
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs - warmup))


def _plateau(config: dict[str, Any], optimizer: Any, epochs: int, minimize: bool) -> Any:
    import torch

    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min" if minimize else "max", factor=float(config["gamma"]),
        patience=int(config["plateau_patience"]))


SCHEDULES: dict[str, ScheduleFactory] = {
    "none": _none,
    "step": _step,
    "cosine": _cosine,
    "plateau": _plateau,
}


class Schedule:
    """Linear warm-up, then the named schedule, stepped once per epoch."""

    def __init__(self, config: dict[str, Any], optimizer: Any, epochs: int,
                 minimize: bool) -> None:
        import torch

        kind = config["schedule"]
        if kind not in SCHEDULES:
            raise SpecError(f"unknown schedule {kind!r}", path="space.schedule",
                            fix=f"Use one of: {', '.join(SCHEDULES)}.")
        self.optimizer = optimizer
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.warmup = int(config["warmup_epochs"])
        self.inner = SCHEDULES[kind](config, optimizer, epochs, minimize)
        # A plateau schedule steps on the metric; the others on the epoch.
        self.on_metric = isinstance(self.inner, torch.optim.lr_scheduler.ReduceLROnPlateau)
        self.set_warmup(1)

    def set_warmup(self, epoch: int) -> None:
        if self.warmup and epoch <= self.warmup:
            for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
                group["lr"] = base * epoch / (self.warmup + 1)

    def step(self, epoch: int, metric: float) -> None:
        """Called after ``epoch`` finished; sets the learning rate of the next epoch."""
        if self.warmup and epoch < self.warmup:
            self.set_warmup(epoch + 1)
            return
        if epoch == self.warmup and self.warmup:
            for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
                group["lr"] = base
            return
        if self.inner is None:
            return
        if self.on_metric:
            self.inner.step(metric)
        else:
            self.inner.step()

    def state_dict(self) -> dict[str, Any]:
        return {"inner": self.inner.state_dict() if self.inner is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.inner is not None and state.get("inner") is not None:
            self.inner.load_state_dict(state["inner"])
