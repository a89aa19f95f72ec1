"""The JSON Schema of study files, for editors: what ``load`` accepts, shorthands and the
catalogue's names included (a test validates every file in studies/ against it)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tunecli import catalogue
from tunecli.spec.models import DURATION_SCHEMA_PATTERN, StudySpec

__all__ = ["json_schema"]


def json_schema() -> dict[str, Any]:
    """The JSON Schema of study files: what ``load`` accepts, shorthands and names included
    (a test validates every file in studies/ against it)."""
    schema = StudySpec.model_json_schema(by_alias=True, mode="validation")
    schema["properties"].pop("base_dir", None)
    schema["title"] = "tunecli study"
    defs, props = schema["$defs"], schema["properties"]

    def names(node: dict[str, Any], values: Iterable[str]) -> None:
        node["enum"] = list(values)

    names(props["metric"], dict.fromkeys(catalogue.CLASSIFICATION_METRICS
                                           + catalogue.REGRESSION_METRICS))
    names(defs["SamplerSpec"]["properties"]["type"], catalogue.SAMPLERS)
    names(defs["PrunerSpec"]["properties"]["type"], catalogue.PRUNERS)
    names(defs["DatasetSpec"]["properties"]["name"], catalogue.DATASETS)
    timeout = defs["BudgetSpec"]["properties"]["timeout"]
    timeout["anyOf"] = [{"type": "number", "exclusiveMinimum": 0},
                        {"type": "string", "pattern": DURATION_SCHEMA_PATTERN},
                        {"type": "null"}]
    trainer = defs["TrainerSpec"]["properties"]
    trainer["dataset"] = {"anyOf": [{"$ref": "#/$defs/DatasetSpec"},
                                    {"type": "string", "enum": list(catalogue.DATASETS)}],
                          "description": "a data set name, or a mapping with name and options"}
    scalar = [{"type": t} for t in ("string", "number", "boolean", "null")]
    props["space"]["additionalProperties"] = {
        "anyOf": [{"$ref": "#/$defs/ParamSpec"}, *scalar, {"type": "array"}],
        "description": "a search range, a choice, or a fixed value (the shorthand `lr: 0.01`)"}
    return schema


