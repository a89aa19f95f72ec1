"""What a user can write: the names (``names``) and the typed hyperparameter table
(``hyperparams``). A leaf layer: it imports neither Optuna nor torch, and every other layer
may import it."""

from __future__ import annotations

import re

from tunecli.catalogue.hyperparams import (
    ACTIVATIONS,
    CNN,
    INITS,
    LAYER_WIDTH,
    LOOP,
    LOOP_DEFAULTS,
    MLP,
    RNN,
    TRANSFORMER,
    Hyperparameter,
    markdown_table,
)
from tunecli.catalogue.names import (
    CLASSIFICATION_METRICS,
    DATASETS,
    MEASURED_BEFORE_TRAINING,
    MEASURES,
    MODELS,
    OPTIMIZERS,
    PRUNERS,
    REGRESSION_METRICS,
    SAMPLERS,
    SCHEDULES,
    SYNONYMS,
)

__all__ = ["ACTIVATIONS", "CLASSIFICATION_METRICS", "CNN", "DATASETS", "INITS", "LAYER_WIDTH",
           "LOOP", "LOOP_DEFAULTS", "MEASURED_BEFORE_TRAINING", "MEASURES", "MLP", "MODELS",
           "MODEL_HYPERPARAMETERS", "OPTIMIZERS", "PRUNERS", "REGRESSION_METRICS", "RNN",
           "SAMPLERS", "SCHEDULES", "SYNONYMS", "TRANSFORMER", "Hyperparameter", "hyperparameter",
           "is_layer_width", "known_hyperparameters", "markdown_table", "meant"]

# Each built-in model's own hyperparameters (the training loop's, LOOP, apply to every model)
MODEL_HYPERPARAMETERS: dict[str, dict[str, Hyperparameter]] = {
    "mlp": MLP, "cnn": CNN, "lstm": RNN, "gru": RNN, "transformer": TRANSFORMER}
_WIDTH_RE = re.compile(r"^width_(\d+)$")


def is_layer_width(name: str) -> bool:
    """``width_0``, ``width_1``, ...: one MLP hidden layer's units."""
    return _WIDTH_RE.match(name) is not None


def known_hyperparameters(model: str) -> set[str]:
    return set(LOOP) | set(MODEL_HYPERPARAMETERS[model])


def hyperparameter(model: str, name: str) -> Hyperparameter | None:
    """The typed entry for ``name`` (model's first, then the loop's); None if unknown."""
    table = MODEL_HYPERPARAMETERS.get(model, {})
    if name in table:
        return table[name]
    if model == "mlp" and is_layer_width(name):
        return LAYER_WIDTH
    return LOOP.get(name)


def meant(name: str, model: str) -> str | None:
    """The hyperparameter a user most likely meant by ``name`` on ``model``: a synonym other
    tools use (``learning_rate``: ``lr``), else a close spelling; None when neither."""
    import difflib

    known = known_hyperparameters(model)
    lowered = name.lower()
    for candidate in SYNONYMS.get(lowered, ()):
        if candidate in known:
            return candidate
    close = difflib.get_close_matches(lowered, sorted(known), n=1, cutoff=0.6)
    if close:
        return close[0]
    synonym = difflib.get_close_matches(lowered, list(SYNONYMS), n=1, cutoff=0.8)
    return next((c for c in SYNONYMS[synonym[0]] if c in known), None) if synonym else None
