"""Every name a user can write in a study file, in one leaf: it imports neither Optuna nor
torch, so checking a study file (``tunecli.spec``), its JSON Schema and ``validate --no-data``
stay instant. Each registry that gives a name its behaviour (``engine/samplers.SAMPLERS``,
``trainer/data.DATASETS``, ...) holds exactly these names, which ``tests/test_catalogue.py``
checks: a new name is added here and there.
"""

from __future__ import annotations

__all__ = ["CLASSIFICATION_METRICS", "DATASETS", "MEASURED_BEFORE_TRAINING", "MEASURES",
           "MODELS", "OPTIMIZERS", "PRUNERS", "REGRESSION_METRICS", "SAMPLERS", "SCHEDULES",
           "SYNONYMS"]

SAMPLERS = ("tpe", "gp", "hyperopt-tpe", "nsga2", "random", "grid", "cmaes", "qmc")
PRUNERS = ("median", "percentile", "asha", "hyperband", "none")
DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10", "image-folder", "csv", "csv-sequence",
            "tensors", "synthetic-classification", "synthetic-regression")
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

# What other tools call a searchable hyperparameter -> ours, first the one a model knows. Never
# accepted silently: they only make the "did you mean" of an unknown name.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "learning_rate": ("lr",), "lr_rate": ("lr",), "learningrate": ("lr",), "eta": ("lr",),
    "batch": ("batch_size",), "batchsize": ("batch_size",), "bs": ("batch_size",),
    "n_layers": ("depth", "num_layers", "conv_blocks"),
    "num_layers": ("depth", "conv_blocks"), "layers": ("depth", "num_layers", "conv_blocks"),
    "n_hidden": ("depth", "num_layers"), "hidden_layers": ("depth", "num_layers"),
    "hidden": ("width", "hidden_size", "classifier_width"),
    "hidden_size": ("width", "classifier_width"), "hidden_units": ("width", "hidden_size"),
    "units": ("width", "hidden_size", "classifier_width"),
    "n_units": ("width", "hidden_size", "classifier_width"),
    "neurons": ("width", "hidden_size"), "filters": ("channels",), "n_filters": ("channels",),
    "l2": ("weight_decay",), "l2_reg": ("weight_decay",), "l2_penalty": ("weight_decay",),
    "wd": ("weight_decay",), "decay": ("weight_decay",), "l1_reg": ("l1",),
    "l1_penalty": ("l1",), "drop_rate": ("dropout",), "dropout_rate": ("dropout",),
    "drop": ("dropout",), "p_dropout": ("dropout",), "opt": ("optimizer",),
    "optim": ("optimizer",), "activation_fn": ("activation",), "act": ("activation",),
    "lr_schedule": ("schedule",), "scheduler": ("schedule",), "clip": ("grad_clip",),
    "gradient_clipping": ("grad_clip",), "max_grad_norm": ("grad_clip",),
}
