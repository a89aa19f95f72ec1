"""The same loop as train_digits.py (its data and epoch), as a function tunecli calls:
``train(params, trial)``.

``trial.report(epoch, ...)`` stores the epoch and raises when the pruner stops the trial
(let it through); ``trial.checkpoint_dir`` and ``trial.resume_epoch`` let a cut trial continue.
"""

import torch
from torch import nn
from train_digits import data, evaluate, train_one_epoch


def train(params: dict, trial) -> None:
    torch.manual_seed(trial.seed)
    loader, x_val, y_val = data(params["batch_size"], trial.seed)
    model = nn.Sequential(nn.Linear(64, params["width"]), nn.ReLU(),
                          nn.Linear(params["width"], 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=params["lr"])
    checkpoint = trial.checkpoint_dir / "checkpoint.pt"
    start = 0
    if trial.resume_epoch and checkpoint.exists():
        state = torch.load(checkpoint, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = state["epoch"]
    for epoch in range(start + 1, trial.epochs + 1):
        train_one_epoch(model, optimizer, loader)
        accuracy, loss = evaluate(model, x_val, y_val)
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "epoch": epoch}, checkpoint)
        trial.report(epoch, val_accuracy=accuracy, val_loss=loss)
