"""A plain PyTorch training script: its own Dataset, DataLoader and loop, no tunecli import.

Run by hand:   python train_digits.py --lr 0.01 --batch-size 32 --width 64 --epochs 5
Tuned:         tunecli search command.yaml (tunecli writes the arguments and reads the lines
               this script prints: one JSON object per epoch)

To continue a trial that was cut or interrupted, it saves a checkpoint each epoch in the
folder TUNECLI_TRIAL_DIR names and starts after TUNECLI_RESUME_EPOCH (both set by tunecli;
by hand neither is set and it starts from scratch).
"""

import argparse
import json
import os
from pathlib import Path

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def data(batch_size: int, seed: int) -> tuple[DataLoader, torch.Tensor, torch.Tensor]:
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    train, val = order[:1400], order[1400:]
    loader = DataLoader(TensorDataset(x[train], y[train]), batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    return loader, x[val], y[val]


def train_one_epoch(model: nn.Module, optimizer: torch.optim.Optimizer,
                    loader: DataLoader) -> None:
    model.train()
    for xb, yb in loader:
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(xb), yb).backward()
        optimizer.step()


def evaluate(model: nn.Module, x_val: torch.Tensor, y_val: torch.Tensor) -> tuple[float, float]:
    """Validation accuracy and loss."""
    model.eval()
    with torch.no_grad():
        out = model(x_val)
        loss = nn.functional.cross_entropy(out, y_val).item()
        accuracy = (out.argmax(1) == y_val).float().mean().item()
    return accuracy, loss


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    loader, x_val, y_val = data(args.batch_size, args.seed)
    model = nn.Sequential(nn.Linear(64, args.width), nn.ReLU(), nn.Linear(args.width, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    folder = os.environ.get("TUNECLI_TRIAL_DIR")
    checkpoint = Path(folder) / "checkpoint.pt" if folder else None
    start = int(os.environ.get("TUNECLI_RESUME_EPOCH", 0))
    if checkpoint is not None and start and checkpoint.exists():
        state = torch.load(checkpoint, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = state["epoch"]
    else:
        start = 0
    for epoch in range(start + 1, args.epochs + 1):
        train_one_epoch(model, optimizer, loader)
        accuracy, loss = evaluate(model, x_val, y_val)
        if checkpoint is not None:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "epoch": epoch}, checkpoint)
        print(json.dumps({"epoch": epoch, "val_accuracy": accuracy, "val_loss": loss}),
              flush=True)


if __name__ == "__main__":
    main()
