"""What a data set's loader gives, before the split, normalisation and the device: its own
module, so the loaders (``data``, ``sequences``, ``csv_table``) share it without importing each
other."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["RawData"]


@dataclass
class RawData:
    """What a loader gives: features (N, ...) and targets; ``test`` when the source fixes one."""

    x: np.ndarray
    y: np.ndarray
    task: str                    # classification | regression
    is_image: bool
    test: tuple[np.ndarray, np.ndarray] | None = None
    # What the outputs and inputs are called, for the trained model's JSON (None: unnamed).
    class_names: list[str] | None = None
    feature_names: list[str] | None = None
    ordered: bool = False        # split in this order (time series), never shuffled
    # How a raw input became a row of ``x`` (a loader's steps, for the trained model's input
    # pipeline: see ``pipeline``): ``divide_by``, a CSV's columns and encodings, windows...
    recipe: dict[str, Any] = field(default_factory=dict)
    # The examples as a saved model takes them, where ``x`` already differs (digits' pixels
    # before scaling, a CSV's columns before one-hot and filling).
    raw_x: np.ndarray | None = None
