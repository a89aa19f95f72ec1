"""Task metrics of a model over a data part, computed on its device (one host sync each).

Classification: loss, accuracy and macro precision/recall/F1 (as scikit-learn computes them,
over the classes present). Regression: MSE, RMSE, MAE and R2 in the target's original units.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

__all__ = ["evaluate", "scores"]


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
    return scores(torch.cat(outputs), y, task, n_outputs, prefix, target_scale)


def scores(out: torch.Tensor, y: torch.Tensor, task: str, n_outputs: int, prefix: str = "val",
           target_scale: tuple[float, float] = (0.0, 1.0)) -> dict[str, float]:
    """The metrics of model outputs ``out`` for targets ``y`` (fused trials score each member's
    outputs with this, as a lone trial does)."""
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
