"""Each registry gives behaviour to exactly the catalogue's names, so the spec's checks, the
JSON Schema and README (which read the catalogue) never offer a name nothing runs."""

from __future__ import annotations

from tunecli import catalogue
from tunecli.engine.strategy import pruners, samplers
from tunecli.trainer import data, measures, models, optim


def test_every_registry_holds_exactly_the_catalogue_names() -> None:
    assert tuple(samplers.SAMPLER_FACTORIES) == catalogue.SAMPLERS
    assert tuple(pruners.PRUNER_FACTORIES) == catalogue.PRUNERS
    assert tuple(data.DATASETS) == catalogue.DATASETS
    assert tuple(models.MODELS) == catalogue.MODELS
    assert tuple(optim.OPTIMIZERS) == catalogue.OPTIMIZERS
    assert tuple(optim.SCHEDULES) == catalogue.SCHEDULES
    assert measures.MEASURES is catalogue.MEASURES


def test_each_built_in_model_has_its_table() -> None:
    assert set(catalogue.MODEL_HYPERPARAMETERS) == set(catalogue.MODELS)
    for name, entry in models.MODELS.items():
        assert entry.hyperparameters is catalogue.MODEL_HYPERPARAMETERS[name]
    assert catalogue.hyperparameter("mlp", "width_3") is catalogue.LAYER_WIDTH
    assert catalogue.hyperparameter("cnn", "width_3") is None
    assert "lr" in catalogue.known_hyperparameters("gru")
