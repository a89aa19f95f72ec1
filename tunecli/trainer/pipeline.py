"""A trained model with its whole input pipeline: from a raw input to outputs in the user's units.

Training turns raw inputs into normalised tensors in several places (a loader scales pixels, a
CSV's cells become numbers and one-hot columns, images become rows, the training part's mean
and std normalise). ``describe`` writes every step down when the model is saved, and
``PipelinedModel`` applies them, so a loaded or exported model takes what the data files hold:

- images: pixels as stored (MNIST-family and CIFAR-10 bytes 0-255, digits 0-16), ``[N, C, H, W]``;
  an image folder's model records the size and channels its files were read at
  (``image_files.image_array`` reads new files so), and resizes a batch of another size;
- a CSV: ``[N, columns]`` in the training file's column order (``csv_table.read_new_rows``
  makes it from text), numbers as they are, a missing number as NaN, a categorical cell as
  the index of its level (``pipeline["categorical"]``); a csv-sequence model takes
  ``[N, window, columns]``;
- tensors: ``x`` as in the training file.

It returns class probabilities, or a regression's value in the target's original units. The
steps are torch operations only, so TorchScript and ONNX exports carry them too.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["FORMAT", "PipelinedModel", "describe", "from_old_info",
           "listed", "raw_shape"]

FORMAT = 1  # the "pipeline" section's layout; a file without one is older


def describe(bundle: Any) -> dict[str, Any]:
    """The pipeline of a model trained on ``bundle`` (a ``data.DataBundle``), as JSON data."""
    recipe = dict(bundle.recipe)
    return {
        "format": FORMAT,
        "task": bundle.task,
        "classes": bundle.class_names,
        "outputs": int(bundle.n_outputs),
        "raw_shape": raw_shape(recipe, bundle.input_shape),
        "divide_by": float(recipe.get("divide_by", 1.0)),
        "image_size": recipe.get("image_size"),
        "channels": recipe.get("channels"),
        "as_sequence": bool(recipe.get("as_sequence", False)),
        "columns": recipe.get("columns"),
        "categorical": recipe.get("categorical") or {},
        "fill": recipe.get("fill") or {},
        "missing": recipe.get("missing"),
        "target": recipe.get("target"),
        "window": recipe.get("window"),
        "horizon": recipe.get("horizon"),
        "mean": listed(bundle.mean),
        "std": listed(bundle.std),
        "target_mean": float(bundle.target_mean),
        "target_std": float(bundle.target_std),
    }


def raw_shape(recipe: dict[str, Any], input_shape: tuple[int, ...]) -> list[int]:
    """One raw example's shape: a CSV's row of columns (a window of rows), else the loader's."""
    columns = recipe.get("columns")
    if columns is not None:
        return [int(recipe["window"]), len(columns)] if recipe.get("window") else [len(columns)]
    return [int(n) for n in recipe.get("raw_shape", input_shape)]


def from_old_info(info: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The pipeline a model file from before ``FORMAT`` implies, and the steps it did not
    record (the model then expects inputs with those steps already done)."""
    features = info.get("features")
    missing = ["how raw inputs were scaled before normalisation (digits /16, image files "
               "/255): inputs are taken as already scaled"]
    pipeline = {
        "format": 0, "task": info["task"], "classes": info.get("classes"),
        "outputs": int(info["n_outputs"]),
        "raw_shape": list(info["input_shape"]), "divide_by": 1.0, "as_sequence": False,
        "columns": None, "categorical": {}, "fill": {}, "missing": None, "target": None,
        "window": None, "horizon": None,
        "mean": info["normalization"]["mean"], "std": info["normalization"]["std"],
        "target_mean": (info.get("target_scaling") or {}).get("mean", 0.0),
        "target_std": (info.get("target_scaling") or {}).get("std", 1.0),
    }
    if features:
        missing = ["the CSV's column order, categorical levels and missing-cell fill: inputs "
                   f"are taken as the {len(features)} encoded features "
                   f"({', '.join(features[:4])}{', ...' if len(features) > 4 else ''})"]
    return pipeline, missing


def listed(array: Any) -> Any:
    """An array as JSON lists (None stays None)."""
    return None if array is None else np.asarray(array).tolist()


class PipelinedModel(nn.Module):
    """The trained network between its input steps and its output steps (see the module
    docstring); ``encode`` and ``decode`` are the two halves, for evaluating on logits."""

    mean: torch.Tensor            # buffers: the normalisation and each column's fill
    std: torch.Tensor
    fill: torch.Tensor
    info: dict[str, Any]          # the model's JSON file, when loaded from one
    unknown_steps: list[str]      # what an old file did not record (said when loaded)

    def __init__(self, network: nn.Module, pipeline: dict[str, Any]) -> None:
        super().__init__()
        self.network = network
        self.pipeline = pipeline
        self.info = {}
        self.unknown_steps = []
        self.classification = pipeline["task"] == "classification"
        self.divide_by = float(pipeline["divide_by"])
        self.image_size = [int(n) for n in pipeline.get("image_size") or []]
        self.as_sequence = bool(pipeline["as_sequence"])
        self.target_mean = float(pipeline["target_mean"])
        self.target_std = float(pipeline["target_std"])
        self.register_buffer("mean", _tensor(pipeline["mean"]))
        self.register_buffer("std", _tensor(pipeline["std"]))
        columns = pipeline.get("columns") or []
        fill = pipeline.get("fill") or {}
        categorical = pipeline.get("categorical") or {}
        # Per raw column: its missing-cell fill (NaN: none, the cell stays missing) and, for a
        # categorical column, how many levels its index selects from (0: a number).
        self.register_buffer("fill", torch.tensor(
            [float(fill.get(c, math.nan)) for c in columns], dtype=torch.float32))
        self.levels = [len(categorical.get(c, [])) for c in columns]

    def encode(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw inputs -> the normalised tensor the network was trained on."""
        x = raw.to(torch.float32)
        if self.levels:
            x = self._columns(x)
        if self.image_size and list(x.shape[-2:]) != self.image_size:
            x = nn.functional.interpolate(x, size=self.image_size, mode="bilinear",
                                          antialias=True, align_corners=False)
        if self.divide_by != 1.0:
            x = x / self.divide_by
        if self.as_sequence:  # images read row by row: [N, C, H, W] -> [N, H, W * C]
            x = x.permute(0, 2, 3, 1).reshape(x.shape[0], x.shape[2], x.shape[3] * x.shape[1])
        return (x - self.mean) / self.std

    def _columns(self, x: torch.Tensor) -> torch.Tensor:
        parts = []
        for j, levels in enumerate(self.levels):
            cell = x[..., j:j + 1]
            if levels:
                codes = torch.arange(levels, dtype=torch.float32, device=x.device)
                parts.append((cell == codes).to(torch.float32))
            else:
                parts.append(torch.where(torch.isnan(cell), self.fill[j:j + 1], cell))
        return torch.cat(parts, dim=-1)

    def decode(self, out: torch.Tensor) -> torch.Tensor:
        """Network outputs -> class probabilities, or values in the target's units."""
        if self.classification:
            return torch.softmax(out.float(), dim=1)
        return out.float().reshape(-1) * self.target_std + self.target_mean

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        return self.decode(self.network(self.encode(raw)))


def _tensor(values: Any) -> torch.Tensor:
    return torch.tensor(values if values is not None else 0.0, dtype=torch.float32)
