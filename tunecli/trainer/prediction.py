"""A trained model's predictions for new inputs, scored as training scored the test part when
the inputs carry their targets (the same network outputs, the same ``metrics.scores``)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np
import torch

from tunecli.trainer.inputs import NewInputs
from tunecli.trainer.metrics import scores

__all__ = ["Prediction", "predict", "write_csv"]


@dataclass
class Prediction:
    """Outputs in the user's units (class probabilities, or values), one row per example."""

    rows: list[str]
    outputs: np.ndarray                 # [N, classes] probabilities, or [N] values
    classes: list[str] | None           # the class each probability column is
    scores: dict[str, float] | None     # the task's metrics, when the targets were given
    searched: str = ""                  # the metric the search ranked by, as ``scores`` names it

    def labels(self) -> list[str]:
        """Each row's predicted class (its name), or its value."""
        if self.classes is None:
            return [format(float(v), ".9g") for v in self.outputs]
        return [self.classes[i] for i in self.outputs.argmax(axis=1)]


def predict(model: Any, inputs: NewInputs, batch_size: int = 1024) -> Prediction:
    """``model`` (a ``pipeline.PipelinedModel``) over ``inputs``, in batches of
    ``batch_size`` (the trainer's evaluation batch, so scores match the test part's)."""
    x = torch.from_numpy(inputs.x)
    logits = []
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            logits.append(model.network(model.encode(x[start:start + batch_size])).float())
        out = torch.cat(logits) if logits else torch.zeros(0, model.pipeline["outputs"])
        decoded = model.decode(out).numpy()
    pipeline = model.pipeline
    classification = pipeline["task"] == "classification"
    found = None
    if inputs.targets is not None and len(out):
        found = scores(out, _scored_targets(inputs.targets, pipeline), pipeline["task"],
                       int(pipeline["outputs"]), "test",
                       (float(pipeline["target_mean"]), float(pipeline["target_std"])))
        found = {key.removeprefix("test_"): value for key, value in found.items()}
    classes = ((pipeline["classes"] or [str(i) for i in range(int(pipeline["outputs"]))])
               if classification else None)
    searched = str(model.info.get("search_metric") or "").removeprefix("val_")
    return Prediction(inputs.rows, decoded, classes, found, searched)


def _scored_targets(targets: np.ndarray, pipeline: dict[str, Any]) -> torch.Tensor:
    """Targets as training held them: class indices, or standardised values."""
    if pipeline["task"] == "classification":
        return torch.as_tensor(targets, dtype=torch.int64)
    scaled = (targets.astype(np.float64) - pipeline["target_mean"]) / pipeline["target_std"]
    return torch.as_tensor(scaled).to(torch.float32)


def write_csv(prediction: Prediction, handle: TextIO, proba: bool = False) -> None:
    """``row,prediction`` (and, with ``proba``, a ``p_CLASS`` column per class)."""
    writer = csv.writer(handle, lineterminator="\n")
    extra = [f"p_{c}" for c in prediction.classes] if proba and prediction.classes else []
    writer.writerow(["row", "prediction", *extra])
    for i, (row, label) in enumerate(zip(prediction.rows, prediction.labels(), strict=True)):
        writer.writerow([row, label, *(f"{p:.6f}" for p in prediction.outputs[i])]
                        if extra else [row, label])
