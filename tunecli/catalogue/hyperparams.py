"""The hyperparameters tunecli's own training loop and models understand: one typed table.

Each entry says its type, its valid range or choices, its default and what it means. The table
is the single source for the loop's defaults, for checking a study's space before anything runs
(``Hyperparameter.problem``), for README's table (a test keeps them equal) and for the messages
that name a bad value. A leaf beside the names: it imports neither torch nor Optuna, so
``validate`` and ``report`` stay quick.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tunecli.catalogue.names import OPTIMIZERS, SCHEDULES

__all__ = [
    "ACTIVATIONS",
    "CNN",
    "INITS",
    "LAYER_WIDTH",
    "LOOP",
    "LOOP_DEFAULTS",
    "MLP",
    "OPTIMIZERS",
    "RNN",
    "SCHEDULES",
    "TRANSFORMER",
    "Hyperparameter",
    "markdown_table",
]

ACTIVATIONS = ("relu", "gelu", "silu", "tanh", "elu", "leaky_relu")
INITS = ("default", "kaiming", "xavier", "orthogonal")  # weight initialisation schemes


@dataclass(frozen=True)
class Hyperparameter:
    """One hyperparameter: ``kind`` is float, int, bool or choice; bounds are inclusive unless
    ``low_open``/``high_open`` (a learning rate must be > 0, a dropout rate < 1)."""

    name: str
    kind: str
    default: Any
    meaning: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] = ()

    def valid(self) -> str:
        """The valid values in words, e.g. '> 0', 'in [0, 1)', 'one of sgd, adam'."""
        if self.kind == "bool":
            return "true or false"
        if self.kind == "choice":
            return "one of " + ", ".join(str(c) for c in self.choices)
        whole = "a whole number " if self.kind == "int" else "a number "
        if self.low is not None and self.high is not None:
            return (f"{whole}in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
                    f"{')' if self.high_open else ']'}")
        if self.low is not None:
            return f"{whole}{'>' if self.low_open else '>='} {self.low:g}"
        return whole.strip()

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not valid here, in the user's words; None when it is."""
        wrong = f"{self.name} must be {self.valid()}, not {value!r}"
        if self.kind == "bool":
            return None if isinstance(value, bool) else wrong
        if self.kind == "choice":
            return None if value in self.choices else wrong
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return wrong
        if not math.isfinite(value) or (self.kind == "int" and float(value) != int(value)):
            return wrong
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return wrong
        if self.high is not None and (value > self.high
                                      or (self.high_open and value == self.high)):
            return wrong
        return None


def _table(*entries: Hyperparameter) -> dict[str, Hyperparameter]:
    return {e.name: e for e in entries}


LOOP = _table(
    Hyperparameter("lr", "float", 1e-3, "learning rate", low=0, low_open=True),
    Hyperparameter("batch_size", "int", 128, "examples per training step", low=1),
    Hyperparameter("optimizer", "choice", "adam", "the optimizer",
                   choices=tuple(OPTIMIZERS)),
    Hyperparameter("momentum", "float", 0.9, "momentum (sgd, rmsprop)", low=0, high=1,
                   high_open=True),
    Hyperparameter("nesterov", "bool", False, "Nesterov momentum (sgd, needs momentum > 0)"),
    Hyperparameter("beta1", "float", 0.9, "first-moment decay (adam, adamw, adabound)", low=0,
                   high=1, high_open=True),
    Hyperparameter("beta2", "float", 0.999, "second-moment decay (adam, adamw, adabound)",
                   low=0, high=1, high_open=True),
    Hyperparameter("amsgrad", "bool", False,
                   "keep the largest second moment: AMSGrad (adam, adamw), AMSBound (adabound)"),
    Hyperparameter("final_lr", "float", 0.1,
                   "adabound: the SGD learning rate its step-size bounds close on", low=0,
                   low_open=True),
    Hyperparameter("bound_gamma", "float", 1e-3,
                   "adabound: how fast the bounds close (the paper's gamma)", low=0,
                   low_open=True),
    Hyperparameter("weight_decay", "float", 0.0, "L2 penalty, through the optimizer", low=0),
    Hyperparameter("l1", "float", 0.0, "L1 penalty on weights, added to the loss", low=0),
    Hyperparameter("schedule", "choice", "none", "learning-rate schedule",
                   choices=tuple(SCHEDULES)),
    Hyperparameter("step_size", "int", 10, "step schedule: epochs between decays", low=1),
    Hyperparameter("gamma", "float", 0.1, "step and plateau schedules: decay factor", low=0,
                   high=1, low_open=True),
    Hyperparameter("plateau_patience", "int", 2,
                   "plateau schedule: epochs without improvement before a decay", low=0),
    Hyperparameter("warmup_epochs", "int", 0, "linear warm-up epochs before the schedule",
                   low=0),
    Hyperparameter("grad_clip", "float", 0.0, "largest gradient norm; 0 disables clipping",
                   low=0),
    # augmentation (trainer/augment.py); images, except mixup and label smoothing
    Hyperparameter("crop", "int", 0, "images: random crop after zero padding by this many "
                   "pixels", low=0),
    Hyperparameter("flip", "bool", False, "images: random horizontal flip"),
    Hyperparameter("rotate", "float", 0.0, "images: random rotation up to this many degrees",
                   low=0, high=180),
    Hyperparameter("translate", "float", 0.0,
                   "images: random shift up to this share of the side", low=0, high=0.5),
    Hyperparameter("cutout", "int", 0, "images: a random square of this side set to zero",
                   low=0),
    Hyperparameter("mixup", "float", 0.0, "classification: mixup's alpha; 0 turns it off",
                   low=0),
    Hyperparameter("label_smoothing", "float", 0.0, "classification: label smoothing", low=0,
                   high=1, high_open=True),
)

LAYER_WIDTH = Hyperparameter("width_N", "int", None, "mlp: units of hidden layer N (from 0)",
                             low=1)

MLP = _table(
    Hyperparameter("depth", "int", 2, "hidden layers", low=0),
    Hyperparameter("width", "int", 128, "units per hidden layer", low=1),
    Hyperparameter("activation", "choice", "relu", "activation function", choices=ACTIVATIONS),
    Hyperparameter("dropout", "float", 0.0, "dropout rate after each hidden layer", low=0,
                   high=1, high_open=True),
    Hyperparameter("batch_norm", "bool", False, "batch normalisation after each hidden layer"),
    Hyperparameter("init", "choice", "default", "weight initialisation (default: torch's)",
                   choices=INITS),
)

CNN = _table(
    Hyperparameter("conv_blocks", "int", 2, "convolution blocks (conv, norm, act, pool)", low=1),
    Hyperparameter("channels", "int", 32, "channels of the first block (doubling per block)",
                   low=1),
    Hyperparameter("kernel_size", "int", 3, "convolution kernel size", low=1),
    Hyperparameter("batch_norm", "bool", True, "batch normalisation in each block"),
    Hyperparameter("dropout", "float", 0.0, "dropout rate before the output layer", low=0,
                   high=1, high_open=True),
    Hyperparameter("classifier_width", "int", 128, "units of the classifier's hidden layer",
                   low=1),
    Hyperparameter("activation", "choice", "relu", "activation function", choices=ACTIVATIONS),
    Hyperparameter("init", "choice", "default", "weight initialisation (default: torch's)",
                   choices=INITS),
)

RNN = _table(  # lstm and gru
    Hyperparameter("hidden_size", "int", 64, "units of the recurrent state", low=1),
    Hyperparameter("layers", "int", 1, "stacked recurrent layers", low=1),
    Hyperparameter("bidirectional", "bool", False, "read the steps both ways"),
    Hyperparameter("dropout", "float", 0.0, "dropout between layers and before the output",
                   low=0, high=1, high_open=True),
    Hyperparameter("init", "choice", "default", "weight initialisation (default: torch's)",
                   choices=INITS),
)

TRANSFORMER = _table(
    Hyperparameter("d_model", "int", 64, "width of each step's vector (rounded up to a "
                   "multiple of heads)", low=1),
    Hyperparameter("heads", "int", 4, "attention heads", low=1),
    Hyperparameter("layers", "int", 2, "encoder layers", low=1),
    Hyperparameter("ff_width", "int", 128, "units of each layer's feed-forward part", low=1),
    Hyperparameter("dropout", "float", 0.1, "dropout in the encoder layers", low=0, high=1,
                   high_open=True),
    Hyperparameter("activation", "choice", "relu", "feed-forward activation",
                   choices=("relu", "gelu")),
    Hyperparameter("init", "choice", "default", "weight initialisation (default: torch's)",
                   choices=INITS),
)

LOOP_DEFAULTS: dict[str, Any] = {name: h.default for name, h in LOOP.items()}


def _shown(default: Any) -> str:
    if default is None:
        return "-"
    if isinstance(default, bool):
        return str(default).lower()
    return f"{default:g}" if isinstance(default, float) else str(default)


def markdown_table(tables: dict[str, dict[str, Hyperparameter]]) -> str:
    """README's hyperparameter table (a test checks README holds exactly this)."""
    lines = ["| hyperparameter | used by | type | valid values | default | meaning |",
             "|---|---|---|---|---|---|"]
    for owner, table in tables.items():
        for h in table.values():
            lines.append(f"| `{h.name}` | {owner} | {h.kind} | {h.valid()} | {_shown(h.default)} | "
                         f"{h.meaning} |")
    return "\n".join(lines)
