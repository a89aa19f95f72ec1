"""Every name a user can write in a study file, in one leaf: it imports neither Optuna nor
torch, so checking a study file (``tunecli.spec``), its JSON Schema and ``validate --no-data``
stay instant. Each registry that gives a name its behaviour (``engine/samplers.SAMPLERS``,
``trainer/data.DATASETS``, ...) holds exactly these names, which ``tests/test_catalogue.py``
checks: a new name is added here and there.
"""

from __future__ import annotations

__all__ = [
           "CLASSIFICATION_METRICS",
           "DATASETS",
           "MEASURED_BEFORE_TRAINING",
           "MEASURES",
           "MODELS",
           "OPTIMIZERS",
           "PRUNERS",
           "REGRESSION_METRICS",
           "SAMPLERS",
           "SCHEDULES",
]

SAMPLERS = ("tpe", "gp", "hyperopt-tpe", "nsga2", "random", "grid", "cmaes", "qmc")
PRUNERS = ("median", "percentile", "asha", "hyperband", "none")
DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10", "csv", "csv-sequence", "tensors",
            "synthetic-classification", "synthetic-regression")
MODELS = ("mlp", "cnn", "lstm", "gru", "transformer")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta", "adabound")
SCHEDULES = ("none", "step", "cosine", "plateau")

# What the trainer reports after every epoch, per task
CLASSIFICATION_METRICS = ("val_accuracy", "val_f1", "val_precision", "val_recall", "val_loss",
                          "train_loss")
REGRESSION_METRICS = ("val_mse", "val_rmse", "val_mae", "val_r2", "val_loss", "train_loss")

# Measures of a trial's model: objectives after the first, and constraints
MEASURES = {
    "params": "trainable parameters",
    "flops": "forward FLOPs per example",
    "latency_ms": "batch-1 inference time (ms)",
    "latency_batch_ms": "inference time of one batch of batch_size (ms)",
    "peak_memory_mb": "peak memory of one training step (MB)",
    "train_seconds": "training time of the trial (s)",
}
MEASURED_BEFORE_TRAINING = ("params", "flops", "latency_ms", "latency_batch_ms",
                            "peak_memory_mb")
