"""What every built-in model is made of: its activation by name, and its weights drawn by an
initialisation scheme. Its own module, so the feed-forward models (``models``) and the
sequence models (``sequence_models``) share it without importing each other."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from tunecli.catalogue import ACTIVATIONS, INITS
from tunecli.errors import SpecError

if TYPE_CHECKING:  # torch is imported when a model is built
    from torch import nn

__all__ = ["activation", "initialise"]

_ACTIVATIONS = dict(zip(ACTIVATIONS, ("ReLU", "GELU", "SiLU", "Tanh", "ELU",
                                      "LeakyReLU"), strict=True))  # name -> torch.nn class


def activation(name: str) -> nn.Module:
    """The activation module named ``name`` (a fused group applies it to stacked tensors)."""
    from torch import nn

    if name not in _ACTIVATIONS:
        raise SpecError(f"unknown activation {name!r}", path="space.activation",
                        fix=f"Use one of: {', '.join(_ACTIVATIONS)}.")
    activation: nn.Module = getattr(nn, _ACTIVATIONS[name])()
    return activation


_GAIN_OF: dict[str, Literal["relu", "tanh", "leaky_relu"]] = {
    "relu": "relu", "tanh": "tanh", "leaky_relu": "leaky_relu"}  # the others: relu's gain


def initialise(model: nn.Module, scheme: str, activation_name: str) -> nn.Module:
    """Re-draws every weight matrix of the linear, convolution, recurrent and attention layers
    by ``scheme`` (``default`` keeps torch's own), their biases zero. The gain follows the
    activation (``nn.init.calculate_gain``)."""
    from torch import nn

    if scheme == "default":
        return model
    if scheme not in INITS:
        raise SpecError(f"unknown init {scheme!r}", path="space.init",
                        fix=f"Use one of: {', '.join(INITS)}.")
    nonlinearity = _GAIN_OF.get(activation_name, "relu")
    gain = nn.init.calculate_gain(nonlinearity)

    def draw(weight: Any) -> None:
        if scheme == "kaiming":
            nn.init.kaiming_normal_(weight, nonlinearity=nonlinearity)
        elif scheme == "xavier":
            nn.init.xavier_uniform_(weight, gain=gain)
        else:
            nn.init.orthogonal_(weight, gain=gain)

    for layer in model.modules():
        for name, param in _initialised(layer):
            if name.startswith("bias") or name.endswith("bias"):
                nn.init.zeros_(param)
            elif param.dim() >= 2:
                draw(param)
    return model


def _initialised(layer: Any) -> list[tuple[str, Any]]:
    """The parameters ``initialise`` re-draws: those of linear, convolution, recurrent and
    attention layers (their own, not their children's)."""
    from torch import nn

    if isinstance(layer, nn.Linear | nn.Conv1d | nn.Conv2d | nn.RNNBase | nn.MultiheadAttention):
        return list(layer.named_parameters(recurse=False))
    return []
