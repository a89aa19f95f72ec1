"""Use the model `tunecli train` saved: load it, normalise new inputs as in training, predict.

    tunecli search studies/digits.yaml
    tunecli report digits --export best.yaml
    tunecli train best.yaml                      # writes models/digits-best.pt and .json
    python examples/predict_with_trained_model.py models/digits-best.json

The weights are a plain state dict, loaded with ``torch.load(..., weights_only=True)``; the JSON
file says how to rebuild the model and holds the normalisation fitted on the training data.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from sklearn.datasets import load_digits

from tunecli.trainer.final import load_model


def main(json_path: str) -> None:
    model, info = load_model(json_path)
    digits = load_digits()
    # The same raw scaling as tunecli's digits loader, then the training normalisation.
    x = (digits.data.astype(np.float32) / 16.0).reshape(-1, *info["input_shape"])
    x = (x - np.asarray(info["normalization"]["mean"], dtype=np.float32)) \
        / np.asarray(info["normalization"]["std"], dtype=np.float32)
    with torch.inference_mode():
        predicted = model(torch.from_numpy(x)).argmax(dim=1).numpy()
    accuracy = float((predicted == digits.target).mean())
    print(f"{info['source']}: test accuracy {info['test_metrics']['test_accuracy']:.4f} "
          f"(held-out part); accuracy on all {len(x)} digits {accuracy:.4f}")
    print("first ten predictions:", predicted[:10].tolist(), "true:", digits.target[:10].tolist())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "models/digits-best.json")
