"""What a model costs, beside how accurate it is: the measures multi-objective studies and
constraints name (``objectives: [{metric: params, direction: minimize}]``, ``params <= 2e5``).

All but ``train_seconds`` depend on the architecture alone, so they are measured before the
trial trains (``measure``): a constraint they break costs the trial no epoch.

- ``params``: trainable parameters.
- ``flops``: floating-point operations of one example's forward pass, counted by PyTorch's
  ``FlopCounterMode`` (a multiply-add is 2; matrix products and convolutions, as PyTorch counts).
- ``latency_ms``: one example's inference (batch 1, eval mode, no grad), the median of timed
  runs after warm-up on the trial's device (CUDA synchronised around each run);
  ``latency_batch_ms`` the same for a batch of the trial's ``batch_size``.
- ``peak_memory_mb``: the memory one training step holds at its peak at the trial's batch size:
  on CUDA ``torch.cuda.max_memory_allocated`` around a forward, backward and optimizer step;
  on the CPU, where PyTorch keeps no allocator statistics, the sum of what that step keeps:
  weights, gradients, the optimizer's state and the activations saved for backward (counted
  through autograd's saved-tensor hooks).
- ``train_seconds``: the trial's training time (known only once it has trained).
"""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING, Any

from tunecli.catalogue import MEASURED_BEFORE_TRAINING as BEFORE_TRAINING
from tunecli.catalogue import MEASURES

if TYPE_CHECKING:  # torch is imported where a model is measured: validate needs the names only
    import torch
    from torch import nn

__all__ = ["BEFORE_TRAINING", "MEASURES", "describe", "measure", "measure_config"]


_WARMUP, _RUNS, _MIN_SECONDS = 3, 25, 0.05


def describe(name: str) -> str:
    return MEASURES.get(name, name)


def measure(model: nn.Module, example: torch.Tensor, batch_size: int, names: set[str],
            make_optimizer: Any = None, loss_fn: Any = None,
            target: torch.Tensor | None = None) -> dict[str, float]:
    """The architecture measures in ``names``, for ``model`` on ``example``'s device.

    ``example`` is one input batch (any size); ``make_optimizer(parameters)`` and ``loss_fn``
    serve ``peak_memory_mb``, which trains one step on a copy of the model.
    """
    import torch

    out: dict[str, float] = {}
    if "params" in names:
        out["params"] = float(sum(p.numel() for p in model.parameters() if p.requires_grad))
    one = example[:1]
    batch = _batch_of(example, batch_size)
    was_training = model.training
    model.eval()
    try:
        if "flops" in names:
            from torch.utils.flop_counter import FlopCounterMode

            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                model(one)
            out["flops"] = float(counter.get_total_flops())
        if "latency_ms" in names:
            out["latency_ms"] = _median_ms(model, one)
        if "latency_batch_ms" in names:
            out["latency_batch_ms"] = _median_ms(model, batch)
    finally:
        model.train(was_training)
    if "peak_memory_mb" in names:
        out["peak_memory_mb"] = _peak_memory_mb(model, batch, make_optimizer, loss_fn,
                                                _batch_of(target, batch_size)
                                                if target is not None else None)
    return out


def _batch_of(x: torch.Tensor, size: int) -> torch.Tensor:
    """``size`` rows of ``x``, repeating it when it has fewer."""
    if len(x) >= size:
        return x[:size]
    reps = -(-size // len(x))
    return x.repeat(reps, *([1] * (x.dim() - 1)))[:size]


def _median_ms(model: nn.Module, x: torch.Tensor) -> float:
    import torch

    cuda = x.device.type == "cuda"
    times: list[float] = []
    with torch.no_grad():
        for _ in range(_WARMUP):
            model(x)
        started = time.perf_counter()
        while len(times) < _RUNS and (len(times) < 5
                                      or time.perf_counter() - started < _MIN_SECONDS):
            if cuda:
                torch.cuda.synchronize(x.device)
            t0 = time.perf_counter()
            model(x)
            if cuda:
                torch.cuda.synchronize(x.device)
            times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 4)


def _peak_memory_mb(model: nn.Module, batch: torch.Tensor, make_optimizer: Any, loss_fn: Any,
                    target: torch.Tensor | None) -> float:
    import copy

    import torch

    twin = copy.deepcopy(model).train()
    optimizer = make_optimizer(twin.parameters()) if make_optimizer else None
    device = batch.device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        _step(twin, batch, optimizer, loss_fn, target)
        torch.cuda.synchronize(device)
        return round((torch.cuda.max_memory_allocated(device) - before) / 2**20, 3)
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.device.type != "meta":
            storage = t.untyped_storage()
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    weights = {p.untyped_storage().data_ptr() for p in twin.parameters()}
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        _step(twin, batch, optimizer, loss_fn, target)
    activations = sum(n for ptr, n in saved.items() if ptr not in weights
                      and ptr != batch.untyped_storage().data_ptr())
    held = sum(p.numel() * p.element_size() * (2 if p.grad is not None else 1)
               for p in twin.parameters())
    state = sum(v.numel() * v.element_size() for s in (optimizer.state.values() if optimizer
                                                       else []) for v in s.values()
                if isinstance(v, torch.Tensor))
    return round((activations + held + state) / 2**20, 3)


def _step(model: nn.Module, batch: torch.Tensor, optimizer: Any, loss_fn: Any,
          target: torch.Tensor | None) -> None:
    out = model(batch)
    loss = loss_fn(out, target) if loss_fn is not None and target is not None \
        else out.float().pow(2).mean()
    loss.backward()
    if optimizer is not None:
        optimizer.step()


def measure_config(trainer: Any, params: dict[str, Any], names: set[str], *,
                   base_dir: str | None = None, data_root: str | None = None
                   ) -> dict[str, float]:
    """Build the configuration's model as its trial would (same seed, device and data) and
    measure it; the trial's training is untouched."""
    import torch
    from torch import nn

    from tunecli.trainer import epochs as epoch_end
    from tunecli.trainer import models
    from tunecli.trainer.loop import prepare
    from tunecli.trainer.optim import make_optimizer

    device, bundle = prepare(trainer, "val_loss", base_dir, data_root)
    config = models.full_config(trainer.model, params)
    torch.manual_seed(trainer.seed)
    model = models.build(trainer.model, config, bundle.input_shape, bundle.n_outputs,
                         base_dir).to(device)
    loss_fn = nn.functional.cross_entropy if bundle.task == "classification" \
        else epoch_end.squared_error
    example = bundle.x_train[:256]
    return measure(model, example, max(1, int(config["batch_size"])), names,
                   make_optimizer=lambda ps: make_optimizer(config, ps, device),
                   loss_fn=loss_fn, target=bundle.y_train[:256])
