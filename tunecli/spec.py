"""The study spec: what a user writes in YAML, validated whole before anything runs.

``load(path, overrides)`` returns a ``StudySpec`` or raises one ``SpecError`` whose single line
names the file, the dotted key path and the fix. ``json_schema()`` gives editors the same rules.

Example::

    spec = load(Path("studies/digits.yaml"), {"budget.n_trials": 5})
"""

from __future__ import annotations

import difflib
import math
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from tunecli.errors import SpecError
from tunecli.yamlio import load_yaml_file

__all__ = ["StudySpec", "ParamSpec", "BudgetSpec", "SamplerSpec", "PrunerSpec", "TrainerSpec",
           "DatasetSpec", "load", "from_stored", "json_schema", "objective_diff", "parse_duration"]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_DURATION_RE = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*d)?\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*"
                          r"(?:(\d+(?:\.\d+)?)\s*m(?:in)?)?\s*(?:(\d+(?:\.\d+)?)\s*s)?\s*$")

# The same durations as _DURATION_RE, in a form JSON Schema validators read: "90s", "1h30m", "600".
_DURATION_SCHEMA_PATTERN = r"^\s*([0-9]+(\.[0-9]+)?\s*(d|h|min|m|s)?\s*)+$"

Scalar = str | int | float | bool | None


def parse_duration(value: Any) -> float | None:
    """'90s', '10m', '1h30m', '2d' or a number of seconds -> seconds."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 90s, 10m or 1h30m")
    if isinstance(value, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*", value):
        value = float(value)  # plain seconds, as --timeout 600
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION_RE.match(str(value))
        if not match or not any(match.groups()):
            raise ValueError(f"{value!r} is not a duration; write e.g. 90s, 10m or 1h30m")
        d, h, m, s = (float(g) if g else 0.0 for g in match.groups())
        seconds = d * 86400 + h * 3600 + m * 60 + s
    if seconds <= 0:
        raise ValueError("must be greater than 0")
    return seconds


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ParamSpec(_Strict):
    """One search-space entry: exactly one of float, int, choice or value."""

    float_: tuple[float, float] | None = Field(None, alias="float",
                                               description="[low, high] of a real parameter")
    int_: tuple[int, int] | None = Field(None, alias="int",
                                         description="[low, high] of an integer parameter")
    choice: list[Scalar] | None = Field(None, description="categorical choices")
    value: Scalar | list[Scalar] = Field(None, description="a fixed value, not searched")
    log: bool = Field(False, description="sample on a log scale (bounds must be > 0)")
    step: float | None = Field(None, description="discretisation step (not with log)")
    when: dict[str, Scalar | list[Scalar]] | None = Field(
        None, description="only sample when earlier parameters have these values")

    @property
    def kind(self) -> str:
        if self.float_ is not None:
            return "float"
        if self.int_ is not None:
            return "int"
        if self.choice is not None:
            return "choice"
        return "value"

    @model_serializer(mode="wrap")
    def _compact(self, handler: Any) -> dict[str, Any]:
        # Only the keys that carry meaning, so a stored spec validates again as written.
        data = handler(self)
        keep = {"float", "int", "float_", "int_", "choice"} - {"value"}
        return {k: v for k, v in data.items()
                if (k == "value" and self.kind == "value")
                or (k in keep and v is not None)
                or (k == "log" and v) or (k in ("step", "when") and v is not None)}

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        # `lr: 0.01` is a fixed value; a mapping is the full form.
        if not isinstance(data, dict):
            return {"value": data}
        return data

    @model_validator(mode="after")
    def _check(self) -> ParamSpec:
        given = [k for k in ("float", "int", "choice", "value")
                 if (k == "value" and "value" in self.model_fields_set)
                 or (k != "value" and getattr(self, {"float": "float_", "int": "int_"}.get(k, k))
                     is not None)]
        if len(given) != 1:
            raise ValueError("give exactly one of float: [low, high], int: [low, high], "
                             f"choice: [...] or value: x (found {', '.join(given) or 'none'})")
        bounds = self.float_ or self.int_
        if bounds is not None:
            low, high = bounds
            if not (math.isfinite(low) and math.isfinite(high)):
                raise ValueError("bounds must be finite numbers")
            if low > high:
                raise ValueError(f"low {low} is greater than high {high}; write [{high}, {low}]")
            if low == high:
                raise ValueError(f"low and high are both {low}; write value: {low} to fix it")
            if self.log and low <= 0:
                example = "1" if self.int_ is not None else "1e-8"
                raise ValueError(f"a log scale needs bounds > 0 (low is {low}); raise low, "
                                 f"e.g. to {example}, or set log: false")
            if self.step is not None:
                if self.log:
                    raise ValueError("step and log cannot be combined; drop one of them")
                if self.step <= 0:
                    raise ValueError("step must be greater than 0")
                if self.int_ is not None and self.step != int(self.step):
                    raise ValueError("an int parameter needs a whole-number step")
        elif self.log or self.step is not None:
            raise ValueError("log and step apply only to float and int parameters")
        if self.choice is not None and not self.choice:
            raise ValueError("choice needs at least one value")
        if self.choice is not None and len({repr(c) for c in self.choice}) != len(self.choice):
            raise ValueError("choice lists a value twice")
        return self


class BudgetSpec(_Strict):
    """When the study stops. n_trials counts finished trials (complete + pruned) over all runs."""

    n_trials: int | None = Field(20, gt=0, description="finished trials to reach")
    timeout: float | None = Field(None, description="wall time per run: 90s, 10m, 1h30m")
    max_failures: int = Field(10, ge=0, description="failed trials tolerated per run")

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float | None:
        return parse_duration(value)


class SamplerSpec(_Strict):
    type: str = Field("tpe", description="tpe | gp | hyperopt-tpe | random | grid | cmaes | qmc")
    seed: int | None = Field(None, description="makes the suggestions repeatable")
    n_startup_trials: int | None = Field(None, ge=0, description="random trials before modelling")
    grid_points: int = Field(5, ge=2, description="grid: points per float axis without step")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="extra keyword arguments for the Optuna sampler")


class PrunerSpec(_Strict):
    type: str = Field("median", description="median | percentile | asha | hyperband | none")
    min_epochs: int = Field(1, ge=0, description="epochs every trial runs before it can be pruned")
    n_startup_trials: int = Field(5, ge=0, description="median/percentile: trials never pruned")
    percentile: float = Field(25.0, gt=0, lt=100, description="percentile pruner: keep the top %")
    reduction_factor: int = Field(3, ge=2, description="asha/hyperband: 1/n trials go on")
    max_epochs: int | None = Field(None, ge=1, description="hyperband: defaults to trainer.epochs")
    patience: int | None = Field(None, ge=0,
                                 description="wrap in PatientPruner: epochs without improvement "
                                             "before the pruner may act")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="extra keyword arguments for the Optuna pruner")


class AugmentSpec(_Strict):
    crop: int = Field(0, ge=0, description="random crop after padding by this many pixels")
    flip: bool = Field(False, description="random horizontal flip")


class DatasetSpec(_Strict):
    """The data; a bare name is short for {name: NAME}."""

    name: str = Field("digits", description="digits | mnist | fashion-mnist | cifar10 | csv | "
                                            "synthetic-classification | synthetic-regression")
    path: str | None = Field(None, description="csv: the file (relative to the study file)")
    target: str | None = Field(None, description="csv: the target column (default: the last)")
    task: Literal["auto", "classification", "regression"] = "auto"
    encoding: str = Field("utf-8", description="csv: the file's text encoding (a UTF-8 BOM is "
                                               "dropped)")
    delimiter: str | None = Field(None, min_length=1, max_length=1,
                                  description="csv: the separator (default: sniffed from , ; "
                                              "tab |)")
    missing: Literal["error", "drop", "mean"] = Field(
        "error", description="csv: empty/NaN/inf cells stop with an error, drop their rows, or "
                             "take the column's mean")
    categorical: list[str] = Field(default_factory=list,
                                   description="csv: text columns to one-hot encode")
    n_samples: int = Field(1000, ge=10, description="synthetic: rows")
    n_features: int = Field(20, ge=1, description="synthetic: columns")
    n_classes: int = Field(3, ge=2, description="synthetic-classification: classes")
    noise: float = Field(0.1, ge=0, description="synthetic-regression: noise")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="share held out for validation")
    test_fraction: float = Field(0.2, ge=0, lt=1, description="share held out for the final "
                                                              "test (never used in search)")
    split_seed: int = Field(0, description="seed of the train/validation/test split")
    max_train_samples: int | None = Field(None, ge=1,
                                          description="use only this many training examples")
    augment: AugmentSpec = Field(default_factory=AugmentSpec)

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data


class TrainerSpec(_Strict):
    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    data_root: str | None = Field(None, description="torchvision data root (relative to the "
                                                    "study file); --data-root and TUNECLI_DATA win")
    download: bool = Field(False, description="let torchvision download missing files")
    model: str = Field("mlp", description="mlp | cnn | package.module:function | file.py:function")
    epochs: int = Field(20, ge=1, le=100000)
    final_epochs: int | None = Field(None, ge=1, le=100000,
                                     description="epochs of `tunecli train` (training + "
                                                 "validation data, no early stopping); default: "
                                                 "the best trial's best epoch, else epochs")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 autocast on CUDA, fp32 on the CPU")
    seed: int = Field(0, description="seed of weights and batch order (one trial = one seed)")
    early_stopping: int | None = Field(None, ge=1,
                                       description="stop a trial after this many epochs without "
                                                   "improvement of the metric")
    eval_batch_size: int = Field(2048, ge=1)
    compile: bool = Field(False, description="torch.compile each model (pays off only for long "
                                             "trials of one architecture)")

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not re.match(r"^(auto|cpu|cuda(:\d+)?|mps)$", value):
            raise ValueError(f"{value!r} is not a device; use auto, cpu, cuda or cuda:N")
        return value


class StudySpec(_Strict):
    """A whole study file."""

    name: str = Field(description="study name in the storage")
    metric: str = Field("val_accuracy", description="the per-epoch metric to optimise")
    direction: Literal["maximize", "minimize"] = "maximize"
    storage: str | None = Field(None, description="Optuna storage URL; default sqlite in the "
                                                  "current folder")
    budget: BudgetSpec = Field(default_factory=BudgetSpec)
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)
    pruner: PrunerSpec = Field(default_factory=PrunerSpec)
    trainer: TrainerSpec = Field(default_factory=TrainerSpec)
    space: dict[str, ParamSpec] = Field(description="the search space, in dependency order")
    # Where the file was; relative data paths are resolved against it. Not part of the schema.
    base_dir: Annotated[str | None, Field(exclude=True)] = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError(f"{value!r} is not a usable study name; use letters, digits, "
                             "'-', '_' and '.'")
        return value

    @field_validator("space")
    @classmethod
    def _space(cls, value: dict[str, ParamSpec]) -> dict[str, ParamSpec]:
        if not value:
            raise ValueError("the search space is empty; add at least one parameter, "
                             "e.g. lr: {float: [1.0e-4, 1.0e-1], log: true}")
        return value

    def searched(self) -> dict[str, ParamSpec]:
        """The parameters that are sampled (not fixed)."""
        return {k: p for k, p in self.space.items() if p.kind != "value"}

    def stored(self) -> dict[str, Any]:
        """JSON-able form kept with the study, so report/resume need no file; ``base_dir``
        (the study file's folder) comes along, so relative paths resolve from any folder."""
        return {**self.model_dump(mode="json", by_alias=True), "base_dir": self.base_dir}

    def portable(self) -> dict[str, Any]:
        """The stored form as a study file that runs from any folder: relative paths (model
        file, CSV, data root) made absolute, no ``base_dir``."""
        data = self.model_dump(mode="json", by_alias=True)
        trainer = data["trainer"]
        target, sep, func = self.trainer.model.rpartition(":")
        if sep and target.endswith(".py"):
            trainer["model"] = f"{self._absolute(target)}:{func}"
        if isinstance(trainer["dataset"], dict) and trainer["dataset"].get("path"):
            trainer["dataset"]["path"] = self._absolute(trainer["dataset"]["path"])
        if trainer.get("data_root"):
            trainer["data_root"] = self._absolute(trainer["data_root"])
        return data

    def _absolute(self, path: str) -> str:
        resolved = Path(path).expanduser()
        if not resolved.is_absolute() and self.base_dir:
            resolved = Path(self.base_dir) / resolved
        return str(resolved.resolve())


# ---------------------------------------------------------------------------------------------
# Turning pydantic's errors into one line with a path and a fix


def did_you_mean(word: str, options: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"Did you mean '{close[0]}'?" if close else ""


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that holds the key at ``loc`` (for 'did you mean' suggestions)."""
    annotation: Any = StudySpec
    for part in loc:
        model = _unwrap_model(annotation)
        if model is not None and isinstance(part, str):
            field = next((f for n, f in model.model_fields.items()
                          if n == part or f.alias == part), None)
            if field is None:
                return None
            annotation = field.annotation
        else:  # dict or list element
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = args[-1] if args else None
    return _unwrap_model(annotation)


def _unwrap_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _unwrap_model(arg)
            if found is not None:
                return found
    return None


def _dotted(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    # pydantic adds union-member and tuple tags such as 'float' or 'function-after[...]'.
    return tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p in
                                                                ("str", "int", "float", "bool",
                                                                 "list[...]", "none"))))


def _error_line(err: typing.Mapping[str, Any]) -> tuple[str, str, str]:
    loc = tuple(err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        parent = _model_at(loc[:-1])
        allowed = [f.alias or n for n, f in parent.model_fields.items()
                   if not (f.exclude)] if parent else []
        hint = did_you_mean(key, allowed)
        fix = hint or (f"Allowed keys: {', '.join(allowed)}." if allowed else "Remove it.")
        return _dotted(loc), f"unknown key '{key}'", fix
    raw_loc, loc = loc, _clean_loc(loc)
    if kind in ("tuple_type", "list_type", "too_short", "too_long") and len(raw_loc) > 2 \
            and raw_loc[0] == "space" and raw_loc[2] in ("float", "int"):
        received = err.get("input")
        key = raw_loc[2]
        return (_dotted((*raw_loc[:2], key)), f"must be a list [low, high], not {received!r}",
                f"Write {key}: [low, high], or value: {received!r} for a fixed value.")
    if kind == "missing":
        return _dotted(loc), "is required but missing", "Add it."
    received = err.get("input")
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return (_dotted(loc), f"must be a mapping of keys, not {received!r}",
                f"Write it as {loc[-1] if loc else 'key'}: {{key: value, ...}}.")
    message = str(err["msg"]).removeprefix("Value error, ")
    message = message.replace("Input should be a valid ", "must be a ")
    message = message.replace("Input should be ", "must be ")
    if kind.endswith("_type") or kind.endswith("_parsing") or kind == "literal_error":
        message = f"{message}, not {received!r}"
    return _dotted(loc), message, ""


def _raise_validation(exc: ValidationError, source: str) -> typing.NoReturn:
    from tunecli.errors import SpecErrors

    # One problem per key path; union branches repeat themselves.
    seen: dict[str, tuple[str, str]] = {}
    for err in exc.errors():
        path, message, fix = _error_line(err)
        seen.setdefault(path, (message, fix))
    # `spaces:` is one slip, not two: drop "space is missing" when a typo points at it.
    suggested = {path.rpartition(".")[0] + ("." if "." in path else "") + fix.split("'")[1]
                 for path, (message, fix) in seen.items()
                 if message.startswith("unknown key") and fix.startswith("Did you mean")}
    errors = [SpecError(message, source=source, path=path or None, fix=fix)
              for path, (message, fix) in seen.items()
              if not (message == "is required but missing" and path in suggested)]
    if len(errors) == 1:
        raise errors[0] from None
    raise SpecErrors(errors) from None


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = data
    for depth, part in enumerate(parents):
        child = node.get(part)
        if not isinstance(child, dict):
            child = {} if child is None else ({"name": child} if part == "dataset" else child)
            if not isinstance(child, dict):
                where = ".".join(parents[:depth + 1])
                raise SpecError(f"cannot set {dotted}: {where} is {child!r}, not a mapping",
                                source="--set", path=dotted,
                                fix=f"Set {where} as a whole, e.g. --set '{where}={{...}}'.")
            node[part] = child
        node = child
    node[last] = value


def parse_assignments(assignments: list[str]) -> dict[str, Any]:
    """``--set KEY.PATH=VALUE`` options -> overrides; values are YAML (``1e-3``, ``{a: 1}``)."""
    from tunecli.yamlio import load_yaml_text

    overrides: dict[str, Any] = {}
    for item in assignments:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or not re.match(r"^[A-Za-z_][\w-]*(\.[A-Za-z_0-9][\w-]*)*$", key):
            raise SpecError(f"'{item}' is not KEY=VALUE", source="--set",
                            fix="Write e.g. --set pruner.type=none or --set trainer.epochs=5.")
        overrides[key] = load_yaml_text(text, f"--set {key}")
    return overrides


def validate(raw: Any, source: str, overrides: dict[str, Any] | None = None,
             base_dir: str | None = None) -> StudySpec:
    """Validate a parsed study (a mapping) with command-line overrides applied."""
    if raw is None:
        raise SpecError("the file is empty", source=source,
                        fix="Write a study: see studies/digits.yaml for a start.")
    if not isinstance(raw, dict):
        raise SpecError(f"the top level must be a mapping of keys, not a {type(raw).__name__}",
                        source=source, fix="Start with 'name: my-study' on the first line.")
    raw = dict(raw)
    for dotted, value in (overrides or {}).items():
        _set_dotted(raw, dotted, value)  # None is YAML's null, as if written in the file
    try:
        spec = StudySpec.model_validate({**raw, "base_dir": base_dir})
    except ValidationError as exc:
        _raise_validation(exc, source)
    from tunecli import checks  # the registries' side: samplers, data sets, models

    checks.check_spec(spec, source)
    return spec


def load(path: Path, overrides: dict[str, Any] | None = None) -> StudySpec:
    """Read and validate a study file; ``overrides`` maps dotted keys to values from options."""
    raw = load_yaml_file(path)
    if isinstance(raw, dict) and "base_dir" in raw:
        raise SpecError("unknown key 'base_dir'", source=str(path), path="base_dir",
                        fix="Remove it.")
    return validate(raw, str(path), overrides, base_dir=str(path.resolve().parent))


def from_stored(stored: dict[str, Any], source: str,
                overrides: dict[str, Any] | None = None) -> StudySpec:
    """The spec kept with a study (see ``StudySpec.stored``), with ``overrides`` applied."""
    stored = dict(stored)
    base_dir = stored.pop("base_dir", None)
    return validate(stored, source, overrides, base_dir=base_dir)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of study files: what ``load`` accepts, shorthands and names included
    (a test validates every file in studies/ against it)."""
    from tunecli import samplers
    from tunecli.trainer import data

    schema = StudySpec.model_json_schema(by_alias=True, mode="validation")
    schema["properties"].pop("base_dir", None)
    schema["title"] = "tunecli study"
    defs, props = schema["$defs"], schema["properties"]

    def names(node: dict[str, Any], values: typing.Iterable[str]) -> None:
        node["enum"] = list(values)

    names(props["metric"], dict.fromkeys(data.CLASSIFICATION_METRICS + data.REGRESSION_METRICS))
    names(defs["SamplerSpec"]["properties"]["type"], samplers.SAMPLERS)
    names(defs["PrunerSpec"]["properties"]["type"], samplers.PRUNERS)
    names(defs["DatasetSpec"]["properties"]["name"], data.DATASETS)
    timeout = defs["BudgetSpec"]["properties"]["timeout"]
    timeout["anyOf"] = [{"type": "number", "exclusiveMinimum": 0},
                        {"type": "string", "pattern": _DURATION_SCHEMA_PATTERN},
                        {"type": "null"}]
    trainer = defs["TrainerSpec"]["properties"]
    trainer["dataset"] = {"anyOf": [{"$ref": "#/$defs/DatasetSpec"},
                                    {"type": "string", "enum": list(data.DATASETS)}],
                          "description": "a data set name, or a mapping with name and options"}
    scalar = [{"type": t} for t in ("string", "number", "boolean", "null")]
    props["space"]["additionalProperties"] = {
        "anyOf": [{"$ref": "#/$defs/ParamSpec"}, *scalar, {"type": "array"}],
        "description": "a search range, a choice, or a fixed value (the shorthand `lr: 0.01`)"}
    return schema


# Parts of the spec that change what a trial's value means. Budget, sampler and pruner may
# change between runs; the data's location and the device may differ between machines.
_MACHINE_LOCAL = {("trainer", "data_root"), ("trainer", "device"), ("trainer", "download"),
                  ("trainer", "eval_batch_size"), ("trainer", "compile"),
                  ("trainer", "final_epochs")}  # used by `tunecli train` only


def _objective_view(stored: dict[str, Any]) -> dict[str, Any]:
    # With this version's defaults filled in, so a study stored before a key existed still
    # matches a file that leaves the key at its default.
    try:
        stored = StudySpec.model_validate({k: v for k, v in stored.items()
                                           if k != "base_dir"}).model_dump(mode="json",
                                                                           by_alias=True)
    except ValidationError:
        pass
    view = {k: stored.get(k) for k in ("metric", "direction", "space", "trainer")}
    trainer = dict(view["trainer"] or {})
    for _, key in _MACHINE_LOCAL:
        trainer.pop(key, None)
    view["trainer"] = trainer
    return view


def objective_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Lines 'path: old -> new' for each difference that would mix incomparable trials."""
    lines: list[str] = []

    def walk(a: Any, b: Any, path: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in list(a) + [k for k in b if k not in a]:
                walk(a.get(key, "<absent>"), b.get(key, "<absent>"),
                     f"{path}.{key}" if path else str(key))
        elif a != b:
            lines.append(f"{path}: {a!r} -> {b!r}")

    walk(_objective_view(old), _objective_view(new), "")
    return lines
