"""Kept for user models written against it (``from tunecli.trainer.hyperparams import
Hyperparameter``); the table lives in ``tunecli.catalogue``."""

from tunecli.catalogue.hyperparams import Hyperparameter

__all__ = ["Hyperparameter"]
