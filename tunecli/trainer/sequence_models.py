"""Built-in sequence models: ``lstm``, ``gru`` and ``transformer`` (an encoder), for examples
shaped ``[time steps, features]`` (see ``sequences``).

The recurrent models classify (or regress) from the last layer's final hidden state, both
directions' when bidirectional. The transformer projects each step to ``d_model``, adds a
learned position embedding, encodes, and averages over time. ``d_model`` is rounded up to a
multiple of ``heads``, so every sampled pair builds (no trial fails on the split of heads).

Not fused (see ``group_loop``): a stack of K recurrent models would need its own step-by-step cell
loop in Python, which is slower on the CPU than K calls of torch's fused LSTM/GRU kernels, and
cuDNN has no batched-weights RNN.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from tunecli.errors import SpecError
from tunecli.trainer.layers import initialise

__all__ = ["build_gru", "build_lstm", "build_transformer", "sequence_shape"]


def sequence_shape(model: str, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """(time steps, features), or a one-line reason the data is not sequences."""
    if len(input_shape) != 2:
        kind = "images" if len(input_shape) == 3 else "a table"
        raise SpecError(f"the {model} model needs sequences ([time steps, features] per "
                        f"example), and this data set is {kind}", path="trainer.model",
                        fix="Use as_sequence: true for images, the csv-sequence or tensors "
                            "data set, or the mlp model.")
    return input_shape[0], input_shape[1]


class Recurrent(nn.Module):
    """An LSTM or GRU over the steps; the last layer's final hidden state (both directions')
    to the outputs."""

    def __init__(self, kind: str, features: int, hidden: int, layers: int,
                 bidirectional: bool, dropout: float, outputs: int) -> None:
        super().__init__()
        cls = nn.LSTM if kind == "lstm" else nn.GRU
        self.rnn = cls(features, hidden, num_layers=layers, batch_first=True,
                       dropout=dropout if layers > 1 else 0.0, bidirectional=bidirectional)
        self.directions = 2 if bidirectional else 1
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden * self.directions, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, state = self.rnn(x)
        hidden = state[0] if isinstance(state, tuple) else state  # LSTM: (h, c)
        # flatten, not reshape(len(x), -1): an export traced at one batch size takes any
        last = hidden[-self.directions:].transpose(0, 1).flatten(1)
        out: torch.Tensor = self.head(self.dropout(last))
        return out


class Encoder(nn.Module):
    """Steps projected to ``width``, a learned position embedding, a transformer encoder,
    the mean over time to the outputs."""

    def __init__(self, steps: int, features: int, width: int, heads: int, layers: int,
                 ff_width: int, dropout: float, activation: str, outputs: int) -> None:
        super().__init__()
        self.project = nn.Linear(features, width)
        self.position = nn.Parameter(torch.zeros(1, steps, width))
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(
            width, heads, ff_width, dropout, batch_first=True,
            activation="gelu" if activation == "gelu" else "relu")
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.project(x) + self.position)
        out: torch.Tensor = self.head(self.norm(h.mean(1)))
        return out


def _recurrent(kind: str) -> Any:
    def build(params: dict[str, Any], input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
        _, features = sequence_shape(kind, input_shape)
        return initialise(Recurrent(kind, features, int(params["hidden_size"]),
                                    int(params["layers"]), bool(params["bidirectional"]),
                                    float(params["dropout"]), n_outputs),
                          params["init"], "tanh")
    build.__doc__ = f"The {kind} model."
    return build


build_lstm = _recurrent("lstm")
build_gru = _recurrent("gru")


def build_transformer(params: dict[str, Any], input_shape: tuple[int, ...],
                      n_outputs: int) -> nn.Module:
    steps, features = sequence_shape("transformer", input_shape)
    heads = int(params["heads"])
    width = heads * math.ceil(int(params["d_model"]) / heads)
    return initialise(Encoder(steps, features, width, heads, int(params["layers"]),
                              int(params["ff_width"]), float(params["dropout"]),
                              params["activation"], n_outputs),
                      params["init"], "relu")
