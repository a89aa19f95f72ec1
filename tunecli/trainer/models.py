"""Models: name -> builder with its hyperparameters, plus users' own builders.

A builder is called as ``build(params, input_shape, n_outputs) -> nn.Module`` where ``params``
is the trial's whole configuration. A user model is named ``package.module:function`` or
``path/to/file.py:function`` (relative to the study file) and gets the same call.

Example of a user model (see examples/custom_model.py)::

    def build(params, input_shape, n_outputs):
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, n_outputs))
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from tunecli.catalogue import (
    LOOP_DEFAULTS,
    MODEL_HYPERPARAMETERS,
    Hyperparameter,
)
from tunecli.errors import SpecError
from tunecli.trainer.layers import activation, initialise
from tunecli.trainer.user_code import import_function

__all__ = [
    "MODELS",
    "ModelEntry",
    "build",
    "builder_for",
    "count_parameters",
    "defaults_for",
    "full_config",
    "resolve_user_model",
]

if TYPE_CHECKING:  # torch is imported where models are built: `report` and `validate` skip it
    from torch import nn

Builder = Callable[[dict[str, Any], tuple[int, ...], int], "nn.Module"]

def build_mlp(params: dict[str, Any], input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
    """Fully connected: depth hidden layers of ``width`` (or ``width_i``) units."""
    from torch import nn

    depth = int(params["depth"])
    width = params["width"]
    widths = list(width) if isinstance(width, (list, tuple)) else [int(width)] * depth
    widths = (widths + [widths[-1]] * depth)[:depth] if widths else []
    for i in range(depth):
        widths[i] = int(params.get(f"width_{i}", widths[i]))
    layers: list[nn.Module] = [nn.Flatten()]
    size = math.prod(input_shape)
    for w in widths:
        # Batch norm's shift makes a bias before it redundant, and its gradient is zero but
        # for rounding noise, which Adam would turn into full-size steps.
        layers.append(nn.Linear(size, w, bias=not params["batch_norm"]))
        if params["batch_norm"]:
            layers.append(nn.BatchNorm1d(w))
        layers.append(activation(params["activation"]))
        if params["dropout"]:
            layers.append(nn.Dropout(float(params["dropout"])))
        size = w
    layers.append(nn.Linear(size, n_outputs))
    return initialise(nn.Sequential(*layers), params["init"], params["activation"])


def build_cnn(params: dict[str, Any], input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
    """Conv blocks (conv, [bn], act, pool) doubling channels, then a small classifier."""
    from torch import nn

    if len(input_shape) != 3:
        raise SpecError(f"the cnn model needs image data (got input shape {input_shape})",
                        path="trainer.model", fix="Use model: mlp for tabular data.")
    in_ch, height, width = input_shape
    channels, kernel = int(params["channels"]), int(params["kernel_size"])
    layers: list[nn.Module] = []
    for _ in range(int(params["conv_blocks"])):
        layers.append(nn.Conv2d(in_ch, channels, kernel, padding=kernel // 2,
                                bias=not params["batch_norm"]))
        if params["batch_norm"]:
            layers.append(nn.BatchNorm2d(channels))
        layers.append(activation(params["activation"]))
        if min(height, width) >= 2:  # small inputs (8x8 digits) stop pooling at 1x1
            layers.append(nn.MaxPool2d(2))
            height, width = height // 2, width // 2
        in_ch, channels = channels, channels * 2
    layers += [nn.Flatten(), nn.Linear(in_ch * height * width, int(params["classifier_width"])),
               activation(params["activation"])]
    if params["dropout"]:
        layers.append(nn.Dropout(float(params["dropout"])))
    layers.append(nn.Linear(int(params["classifier_width"]), n_outputs))
    return initialise(nn.Sequential(*layers), params["init"], params["activation"])


@dataclass
class ModelEntry:
    build: Builder
    hyperparameters: dict[str, Hyperparameter] = field(default_factory=dict)

    @property
    def defaults(self) -> dict[str, Any]:
        return {name: h.default for name, h in self.hyperparameters.items()}


def _sequence_model(name: str) -> Builder:
    """The sequence models import torch when first built, not when this module is imported."""
    def build(params: dict[str, Any], input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
        from tunecli.trainer import sequence_models

        builder: Builder = getattr(sequence_models, f"build_{name}")
        return builder(params, input_shape, n_outputs)
    return build


# The builders of the catalogue's models, each with its catalogue table
MODELS: dict[str, ModelEntry] = {
    name: ModelEntry(build, MODEL_HYPERPARAMETERS[name]) for name, build in (
        ("mlp", build_mlp), ("cnn", build_cnn), ("lstm", _sequence_model("lstm")),
        ("gru", _sequence_model("gru")), ("transformer", _sequence_model("transformer")))}


def resolve_user_model(reference: str, base_dir: str | None) -> Builder:
    """'pkg.mod:fn' or 'file.py:fn' -> the builder; a SpecError says what is wrong."""
    return cast(Builder, import_function(reference, base_dir, "trainer.model"))


def builder_for(model: str, base_dir: str | None = None) -> Builder:
    """The function that builds ``model``: a built-in one's, or the user's (imported)."""
    return MODELS[model].build if model in MODELS else resolve_user_model(model, base_dir)


def build(model: str, params: dict[str, Any], input_shape: tuple[int, ...], n_outputs: int,
          base_dir: str | None = None, builder: Builder | None = None) -> nn.Module:
    """``builder``: one already looked up with ``builder_for`` (a user's file is then not
    imported again)."""
    from torch import nn

    module = (builder or builder_for(model, base_dir))(params, input_shape, n_outputs)
    if not isinstance(module, nn.Module):
        raise SpecError(f"{model} returned {type(module).__name__}, not a torch.nn.Module",
                        path="trainer.model", fix="Return the model from the function.")
    return module


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def multiply_adds(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """The multiply-adds of one example's forward pass (how large a step is, for fusion and
    threads): linear layers at every position they apply to, convolutions at each layer's
    image size, recurrent layers' weights at every time step. Run in eval mode; the model's own
    mode is kept."""
    import torch
    from torch import nn

    total = 0

    def count(module: nn.Module, inputs: Any, output: Any) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            total += output[0].numel() * module.in_channels * math.prod(module.kernel_size) \
                // module.groups
        elif isinstance(module, nn.Linear):
            total += output.numel() // module.out_features * module.in_features \
                * module.out_features
        elif isinstance(module, nn.RNNBase):
            steps = inputs[0].shape[1 if module.batch_first else 0] if inputs[0].ndim > 2 else 1
            total += steps * sum(p.numel() for p in module.parameters() if p.ndim > 1)

    hooks = [m.register_forward_hook(count) for m in model.modules()
             if isinstance(m, nn.Conv2d | nn.Linear | nn.RNNBase)]
    training = model.training
    try:
        with torch.no_grad():
            device = next(iter(model.parameters()), torch.zeros(())).device
            model.eval()(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(training)
        for hook in hooks:
            hook.remove()
    return total


def defaults_for(model: str) -> dict[str, Any]:
    return dict(MODELS[model].defaults) if model in MODELS else {}


def full_config(model: str, params: dict[str, Any]) -> dict[str, Any]:
    """The whole configuration a trial trains with: the loop's and the model's defaults with
    the trial's parameters on top."""
    return {**LOOP_DEFAULTS, **defaults_for(model), **params}

