"""Data augmentation and label smoothing as hyperparameters, done on tensors on the device.

Why on the device: the data sets live there as tensors (``data.prepare``); moving batches to the
CPU for torchvision's transforms would cost more than the step. Every draw comes from the
trial's own generator, so a trial is as reproducible with augmentation as without, and a retry
that continues from a checkpoint (which keeps that generator's state) draws what it would have.

Images (``[N, C, H, W]``): random crop after zero padding, horizontal flip, rotation and
translation (one affine resampling), cutout (DeVries & Taylor 2017). Classification: mixup
(Zhang et al. 2018; one mixing weight per batch from Beta(alpha, alpha), as the paper does) and
label smoothing. Zero (or false) turns each off. ``trainer.dataset.augment`` sets crop and flip
for every trial; a non-zero value in the space wins.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from tunecli.spec.models import TrainerSpec

__all__ = ["IMAGE_KEYS", "LABEL_KEYS", "Augmentation"]

IMAGE_KEYS = ("crop", "flip", "rotate", "translate", "cutout")
LABEL_KEYS = ("mixup", "label_smoothing")  # classification only


@dataclass(frozen=True)
class Augmentation:
    crop: int = 0
    flip: bool = False
    rotate: float = 0.0      # largest angle, degrees
    translate: float = 0.0   # largest shift, as a share of the side
    cutout: int = 0          # side of the square set to zero, pixels
    mixup: float = 0.0       # Beta(alpha, alpha); 0: off
    label_smoothing: float = 0.0

    @classmethod
    def of(cls, trainer: TrainerSpec, config: dict[str, Any]) -> Augmentation:
        fixed = trainer.dataset.augment
        return cls(crop=int(config["crop"]) or fixed.crop, flip=bool(config["flip"]) or fixed.flip,
                   rotate=float(config["rotate"]), translate=float(config["translate"]),
                   cutout=int(config["cutout"]), mixup=float(config["mixup"]),
                   label_smoothing=float(config["label_smoothing"]))

    @property
    def on_images(self) -> bool:
        return bool(self.crop or self.flip or self.rotate or self.translate or self.cutout)

    def images(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The batch transformed per example (``x`` is not changed)."""
        if self.crop:
            x = _crop(x, self.crop, generator)
        if self.flip:
            flipped = _uniform(x.shape[0], x, generator) < 0.5
            x = x.flip(3).where(flipped[:, None, None, None], x)
        if self.rotate or self.translate:
            x = _affine(x, self.rotate, self.translate, generator)
        if self.cutout:
            x = _cutout(x, self.cutout, generator)
        return x

    def loss(self, base: Callable[..., torch.Tensor], x: torch.Tensor, y: torch.Tensor,
             forward: Callable[[torch.Tensor], torch.Tensor],
             generator: torch.Generator) -> torch.Tensor:
        """The classification loss of one batch with mixup and label smoothing (``base`` is
        ``cross_entropy``)."""
        smoothing = {"label_smoothing": self.label_smoothing} if self.label_smoothing else {}
        if not self.mixup:
            return base(forward(x).float(), y, **smoothing)
        import torch

        weight = _beta(self.mixup, generator, x.device)
        partner = torch.randperm(len(x), device=x.device, generator=generator)
        out = forward(x * weight + x[partner] * (1 - weight)).float()
        return (weight * base(out, y, **smoothing)
                + (1 - weight) * base(out, y[partner], **smoothing))


def _uniform(n: int, like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    import torch

    return torch.rand(n, device=like.device, generator=generator)


def _crop(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    import torch

    batch, channels, height, width = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (batch,), device=x.device, generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (batch,), device=x.device, generator=generator)
    rows = (dy[:, None] + torch.arange(height, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(width, device=x.device))[:, None, None, :]
    b = torch.arange(batch, device=x.device)[:, None, None, None]
    c = torch.arange(channels, device=x.device)[None, :, None, None]
    return padded[b, c, rows, cols]


def _affine(x: torch.Tensor, degrees: float, shift: float,
            generator: torch.Generator) -> torch.Tensor:
    """Rotation by up to ``degrees`` and translation by up to ``shift`` of each side, bilinear,
    zero outside the image."""
    import torch

    batch = x.shape[0]
    angle = (_uniform(batch, x, generator) * 2 - 1) * math.radians(degrees)
    moves = (torch.rand(batch, 2, device=x.device, generator=generator) * 2 - 1) * 2 * shift
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack([torch.stack([cos, -sin, moves[:, 0]], 1),
                         torch.stack([sin, cos, moves[:, 1]], 1)], 1).to(x.dtype)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, padding_mode="zeros", align_corners=False)


def _cutout(x: torch.Tensor, side: int, generator: torch.Generator) -> torch.Tensor:
    """A ``side`` x ``side`` square set to zero around a random centre (partly outside the
    image near an edge, as in the paper)."""
    import torch

    batch, _, height, width = x.shape
    cy = torch.randint(0, height, (batch,), device=x.device, generator=generator)
    cx = torch.randint(0, width, (batch,), device=x.device, generator=generator)
    rows = torch.arange(height, device=x.device)[None, :]
    cols = torch.arange(width, device=x.device)[None, :]
    top, left = cy[:, None] - side // 2, cx[:, None] - side // 2
    inside_rows = (rows >= top) & (rows < top + side)
    inside_cols = (cols >= left) & (cols < left + side)
    square = inside_rows[:, :, None] & inside_cols[:, None, :]
    return x.masked_fill(square[:, None], 0.0)


def _beta(alpha: float, generator: torch.Generator, device: Any) -> float:
    """One draw of Beta(alpha, alpha), seeded from the trial's generator (torch's Beta cannot
    take a generator)."""
    import numpy as np
    import torch

    seed = int(torch.randint(0, 2**31 - 1, (1,), device=device, generator=generator).item())
    return float(np.random.default_rng(seed).beta(alpha, alpha))
