"""Would fusing the built-in ``cnn`` pay? A grouped-convolution prototype, measured in one run.

K digits CNNs (2 blocks of conv 3x3 + ReLU + 2x2 max-pool, 16 then 32 channels, a 64-unit
classifier, Adam) stacked as one model: each conv layer one ``conv2d`` with ``groups=K`` over
the members' channels side by side, the classifier batched matmuls (as ``trainer.fused`` does for
the MLP). Prints the training step's time for one model alone and for the K stacked, and the
ratio K x alone / stacked (what fusion would gain).

    python benchmarks/grouped_conv.py [--k 8] [--batch 64] [--channels 16] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    torch.manual_seed(0)
    device, k, c, b = torch.device(args.device), args.k, args.channels, args.batch
    x = torch.randn(b, 1, 8, 8, device=device)
    y = torch.randint(0, 10, (b,), device=device)
    lone = nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(c, 2 * c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(2 * c * 4, 64), nn.ReLU(),
                         nn.Linear(64, 10)).to(device)
    lone_optimizer = torch.optim.Adam(lone.parameters())

    def shaped(*shape: int) -> torch.Tensor:
        return (torch.randn(*shape, device=device) * 0.1).requires_grad_()

    stacked = [shaped(k * c, 1, 3, 3), shaped(k * c), shaped(k * 2 * c, c, 3, 3),
               shaped(k * 2 * c), shaped(k, 2 * c * 4, 64), shaped(k, 1, 64), shaped(k, 64, 10),
               shaped(k, 1, 10)]
    stacked_optimizer = torch.optim.Adam(stacked)

    def step_alone() -> None:
        lone_optimizer.zero_grad()
        F.cross_entropy(lone(x), y).backward()  # type: ignore[no-untyped-call]
        lone_optimizer.step()

    def step_stacked() -> None:
        w1, b1, w2, b2, h1, c1, h2, c2 = stacked
        stacked_optimizer.zero_grad()
        h = x.repeat(1, k, 1, 1)
        h = F.max_pool2d(F.relu(F.conv2d(h, w1, b1, padding=1, groups=k)), 2)
        h = F.max_pool2d(F.relu(F.conv2d(h, w2, b2, padding=1, groups=k)), 2)
        h = h.reshape(b, k, -1).transpose(0, 1)
        out = torch.baddbmm(c2, F.relu(torch.baddbmm(c1, h, h1)), h2)
        F.cross_entropy(out.permute(1, 2, 0), y.unsqueeze(1).expand(-1, k),
                        reduction="none").mean(0).sum().backward()  # type: ignore[no-untyped-call]
        stacked_optimizer.step()

    times = {}
    for name, step in (("alone", step_alone), ("stacked", step_stacked)):
        for _ in range(10):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        for _ in range(args.steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times[name] = (time.perf_counter() - started) / args.steps * 1000
    print(f"one CNN alone: {times['alone']:.2f} ms a step; {k} stacked: {times['stacked']:.2f} ms "
          f"a step; fusion would gain {k * times['alone'] / times['stacked']:.2f}x")


if __name__ == "__main__":
    main()
