"""tunecli: hyperparameter search for PyTorch models from a YAML study, driven by Optuna."""

__version__ = "0.1.0"
