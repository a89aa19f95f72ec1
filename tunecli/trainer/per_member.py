"""What each member of a fused step draws and applies as its own lone trial would: dropout
masks, L1 and label smoothing in its loss, clipping over its own gradients. ``fused`` calls
these once per step for all members at once (tensors with the members first)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from tunecli.trainer.stacked import Stack

__all__ = ["Settings", "clip_gradients", "cross_entropy", "dropout_noise"]


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
