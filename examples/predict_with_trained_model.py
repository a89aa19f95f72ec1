"""Use the model `tunecli train` saved: load it with its input pipeline, predict raw inputs.

    tunecli search studies/digits.yaml
    tunecli report digits --export best.yaml
    tunecli train best.yaml                      # writes models/digits-best.pt and .json
    python examples/predict_with_trained_model.py models/digits-best.json

The loaded model takes digits as scikit-learn ships them (pixels 0-16): the scaling and the
normalisation fitted on the training part are inside it, read from the model's JSON file.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from sklearn.datasets import load_digits

from tunecli import api


def main(json_path: str) -> None:
    model = api.load_model(json_path)
    part = api.held_out_part(json_path)            # the test part it was tested on, raw
    with torch.inference_mode():
        tested = model(torch.from_numpy(part.x)).argmax(dim=1).numpy()
    digits = load_digits()
    pixels = digits.data.astype(np.float32).reshape(-1, 1, 8, 8)
    with torch.inference_mode():
        predicted = model(torch.from_numpy(pixels)).argmax(dim=1).numpy()
    print(f"{model.info['source']}: test accuracy {(tested == part.targets).mean():.4f} "
          f"(train printed {model.info['test_metrics']['test_accuracy']:.4f}); accuracy on "
          f"all {len(pixels)} digits {(predicted == digits.target).mean():.4f}")
    print("first ten predictions:", predicted[:10].tolist(), "true:", digits.target[:10].tolist())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "models/digits-best.json")
