"""The hyperparameters the built-in training loop understands, with their defaults.

A study's ``space`` may set any of these (sampled or fixed); whatever it leaves out takes the
default here. Model hyperparameters live beside each model in ``models.MODELS``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LOOP_DEFAULTS", "OPTIMIZERS", "SCHEDULES"]

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta")
SCHEDULES = ("none", "step", "cosine", "plateau")

LOOP_DEFAULTS: dict[str, Any] = {
    "lr": 1e-3,                # learning rate
    "batch_size": 128,
    "optimizer": "adam",       # one of OPTIMIZERS
    "momentum": 0.9,           # sgd, rmsprop
    "nesterov": False,         # sgd (needs momentum > 0)
    "beta1": 0.9,              # adam, adamw
    "beta2": 0.999,            # adam, adamw
    "weight_decay": 0.0,       # L2, through the optimizer
    "l1": 0.0,                 # L1 penalty added to the loss
    "schedule": "none",        # one of SCHEDULES
    "step_size": 10,           # step schedule: epochs between decays
    "gamma": 0.1,              # step and plateau schedules: decay factor
    "plateau_patience": 2,     # plateau schedule: epochs without improvement before decay
    "warmup_epochs": 0,        # linear warm-up before the schedule
    "grad_clip": 0.0,          # max gradient norm; 0 disables clipping
}
