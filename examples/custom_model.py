"""A user model for tunecli: any function (params, input_shape, n_outputs) -> nn.Module.

Use it from a study file (path relative to the study file):

    trainer: {dataset: digits, model: ../examples/custom_model.py:build}
    space:
      hidden: {int: [16, 256], log: true}
      residual: {choice: [true, false]}

Every space parameter reaches ``params``, so the model may define its own hyperparameters;
the training loop's own (lr, batch_size, optimizer, ...) are in ``params`` too.

``tunecli search studies/custom-model.yaml --fuse 4`` trains four of its trials at a time as one
batched model through ``torch.func`` (members share ``hidden`` and ``residual``, and differ in
lr and the other optimizer settings); a model ``vmap`` cannot run trains alone, saying why.
"""

from __future__ import annotations

import math

from torch import nn

from tunecli.catalogue import Hyperparameter

# Optional: declare the model's own hyperparameters as tunecli declares its built-in ones, and
# `tunecli validate`/`search` check the study's values against them before anything runs.
HYPERPARAMETERS = {
    "hidden": Hyperparameter("hidden", "int", 64, "units of the hidden layers", low=1),
    "residual": Hyperparameter("residual", "bool", True, "add the block's input to its output"),
}


class ResidualMLP(nn.Module):
    def __init__(self, n_inputs: int, hidden: int, n_outputs: int, residual: bool) -> None:
        super().__init__()
        self.inp = nn.Linear(n_inputs, hidden)
        self.block = nn.Sequential(nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.out = nn.Linear(hidden, n_outputs)
        self.residual = residual

    def forward(self, x):  # type: ignore[no-untyped-def]
        h = self.inp(x.flatten(1))
        h = h + self.block(h) if self.residual else self.block(h)
        return self.out(h)


def build(params: dict, input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
    return ResidualMLP(math.prod(input_shape), int(params.get("hidden", 64)), n_outputs,
                       bool(params.get("residual", True)))
