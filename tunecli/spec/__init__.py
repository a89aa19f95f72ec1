"""The study spec: what a user writes in YAML, validated whole before anything runs.

Neither Optuna nor torch is imported: the names come from ``tunecli.catalogue``; what needs
them (the data, the model, Optuna's options) is checked by ``engine/preflight``.

- ``models``: the schema (pydantic); ``params``: one search-space entry
- ``yamlio``: safe YAML 1.2 reading
- ``overrides``: ``--set KEY.PATH=VALUE``
- ``wording``: validation errors in the user's words
- ``checks``: names checked against the catalogue (samplers, data sets, models,
  hyperparameters), the sampler against the space, every problem at once
- ``grid``: a grid search's points
- ``loading``: ``load`` / ``validate`` / ``from_stored`` (problems blamed on their option)
- ``diff``: whether a changed spec measures what a stored study measured
- ``schema``: the JSON Schema for editors
"""

from tunecli.spec.diff import objective_diff
from tunecli.spec.loading import from_stored, load, validate
from tunecli.spec.models import (
    AugmentSpec,
    BudgetSpec,
    DatasetSpec,
    ParamSpec,
    PrunerSpec,
    SamplerSpec,
    StudySpec,
    TrainerSpec,
    parse_duration,
)
from tunecli.spec.overrides import parse_assignments
from tunecli.spec.schema import json_schema

__all__ = [
    "AugmentSpec",
    "BudgetSpec",
    "DatasetSpec",
    "ParamSpec",
    "PrunerSpec",
    "SamplerSpec",
    "StudySpec",
    "TrainerSpec",
    "from_stored",
    "json_schema",
    "load",
    "objective_diff",
    "parse_assignments",
    "parse_duration",
    "validate",
]
