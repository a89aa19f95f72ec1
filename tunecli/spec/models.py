"""The study spec's schema: what a user may write in a study file, as pydantic models.

A leaf module: it imports no registry, sampler or trainer (``checks`` looks names up in those).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)

from tunecli.spec.params import ParamSpec, Scalar, Strict

__all__ = [
    "DURATION_SCHEMA_PATTERN",
    "AugmentSpec",
    "BudgetSpec",
    "Constraint",
    "DatasetSpec",
    "ObjectiveSpec",
    "ParamSpec",
    "PrunerSpec",
    "SamplerSpec",
    "Scalar",
    "StudySpec",
    "TrainerSpec",
    "parse_duration",
]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_DURATION_RE = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*d)?\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*"
                          r"(?:(\d+(?:\.\d+)?)\s*m(?:in)?)?\s*(?:(\d+(?:\.\d+)?)\s*s)?\s*$")

# The same durations as _DURATION_RE, in a form JSON Schema validators read: "90s", "1h30m", "600".
DURATION_SCHEMA_PATTERN = r"^\s*([0-9]+(\.[0-9]+)?\s*(d|h|min|m|s)?\s*)+$"



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


class BudgetSpec(Strict):
    """When the study stops. n_trials counts finished trials (complete + pruned) over all runs."""

    n_trials: int | None = Field(20, gt=0, description="finished trials to reach (default 20, "
                                                       "none when epochs is given)")
    epochs: int | None = Field(None, gt=0, description="compute: epochs trained by all trials "
                                                       "together, over all runs and workers")
    timeout: float | None = Field(None, description="wall time per run: 90s, 10m, 1h30m")
    max_failures: int = Field(10, ge=0, description="failed trials tolerated per run")

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float | None:
        return parse_duration(value)

    def describe(self) -> str:
        """The limits in words, e.g. '40 trials / 480 epochs / 300s'."""
        parts = ([f"{self.n_trials} trials"] if self.n_trials else []) + (
            [f"{self.epochs} epochs"] if self.epochs else []) + (
            [f"{self.timeout:g}s"] if self.timeout else [])
        return " / ".join(parts) or "none"

    @model_validator(mode="after")
    def _compute_alone(self) -> BudgetSpec:
        # `budget: {epochs: 480}` means 480 epochs, not also the default 20 trials.
        if self.epochs is not None and "n_trials" not in self.model_fields_set:
            self.n_trials = None
        return self


class SamplerSpec(Strict):
    type: str = Field("tpe", description="tpe | gp | hyperopt-tpe | random | grid | cmaes | qmc")
    seed: int | None = Field(None, description="makes the suggestions repeatable")
    n_startup_trials: int | None = Field(None, ge=0, description="random trials before modelling")
    grid_points: int = Field(5, ge=2, description="grid: points per float axis without step")
    defaults_first: StrictBool | None = Field(
        None, description="the first trial of a new study tries the trainer's defaults, moved "
                          "into the space (default: yes for tpe, gp and hyperopt-tpe)")
    center_first: StrictBool | None = Field(
        None, description="a new study then tries the centre of the space "
                          "(default: yes for tpe, gp and hyperopt-tpe)")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="extra keyword arguments for the Optuna sampler")


class PrunerSpec(Strict):
    type: str = Field("median", description="median | percentile | asha | hyperband | none")
    min_epochs: int = Field(1, ge=0, description="epochs every trial runs before it can be pruned")
    n_startup_trials: int = Field(3, ge=0, description="median/percentile: trials never pruned")
    percentile: float = Field(25.0, gt=0, lt=100, description="percentile pruner: keep the top %")
    reduction_factor: int = Field(3, ge=2, description="asha/hyperband: 1/n trials go on")
    max_epochs: int | None = Field(None, ge=1, description="hyperband: defaults to trainer.epochs")
    patience: int | None = Field(None, ge=0,
                                 description="wrap in PatientPruner: epochs without improvement "
                                             "before the pruner may act")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="extra keyword arguments for the Optuna pruner")


class AugmentSpec(Strict):
    crop: int = Field(0, ge=0, description="random crop after padding by this many pixels")
    flip: StrictBool = Field(False, description="random horizontal flip")


class DatasetSpec(Strict):
    """The data; a bare name is short for {name: NAME}."""

    name: str = Field("digits", description="digits | mnist | fashion-mnist | cifar10 | "
                                            "image-folder | csv | csv-sequence | tensors | "
                                            "synthetic-classification | synthetic-regression")
    path: str | None = Field(None, description="csv, csv-sequence, tensors: the file; "
                                               "image-folder: the folder with a folder of "
                                               "images per class (relative to the study file)")
    size: Annotated[list[Annotated[int, Field(ge=1, le=4096)]],
                    Field(min_length=2, max_length=2)] | None = Field(
        None, description="image-folder: [height, width] every image is resized to (default: "
                          "their own size, when they share one)")
    target: str | None = Field(None, description="csv, csv-sequence: the target column "
                                                 "(default: the last)")
    as_sequence: StrictBool = Field(False, description="images read row by row: [rows, columns x "
                                                 "channels] per example (sequential MNIST)")
    window: int | None = Field(None, ge=1, description="csv-sequence: rows per example")
    horizon: int = Field(0, ge=0, description="csv-sequence: predict the target this many rows "
                                              "after the window's last (0: at it)")
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
        data = {"name": data} if isinstance(data, str) else data
        if isinstance(data, dict) and isinstance(data.get("size"), int) \
                and not isinstance(data.get("size"), bool):
            data = {**data, "size": [data["size"], data["size"]]}  # size: 64 is 64 x 64
        return data


class TrainerSpec(Strict):
    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    data_root: str | None = Field(None, description="torchvision data root (relative to the "
                                                    "study file); --data-root and TUNECLI_DATA win")
    download: StrictBool = Field(False, description="let torchvision download missing files")
    model: str = Field("mlp", description="mlp | cnn | lstm | gru | transformer | "
                                          "package.module:function | file.py:function")
    epochs: int = Field(20, ge=1, le=100000)
    final_epochs: int | None = Field(None, ge=1, le=100000,
                                     description="epochs of `tunecli train` (training + "
                                                 "validation data, no early stopping); default: "
                                                 "the best trial's best epoch, else epochs")
    repeats: int = Field(1, ge=1, le=100, description="train each trial this many times "
                                                      "(seeds seed..seed+N-1); the metric is "
                                                      "the mean, the spread is stored")
    cv: int | None = Field(None, ge=2, le=50, description="k-fold cross-validation per trial "
                                                          "over the training + validation "
                                                          "data; the metric is the mean")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 autocast on CUDA, fp32 on the CPU")
    seed: int = Field(0, description="seed of weights and batch order (one trial = one seed)")
    data_shares: list[Annotated[float, Field(gt=0, le=1)]] = Field(
        default_factory=list, max_length=100,
        description="successive halving over data size: the share of the training set each "
                    "of the first epochs trains on, e.g. [0.25, 0.5] (epoch 1 a random "
                    "quarter, epoch 2 half, then all), so the pruner's first rungs cost less")
    early_stopping: int | None = Field(None, ge=1,
                                       description="stop a trial after this many epochs without "
                                                   "improvement of the metric")
    eval_batch_size: int = Field(2048, ge=1)
    compile: StrictBool = Field(False, description="torch.compile each model (pays off only "
                                "for long trials of one architecture)")
    threads: Literal["auto"] | int = Field(
        "auto", description="CPU threads per trial: auto (the usable cores, less those other "
                            "work keeps busy; 1 for a small model) or N; TUNECLI_THREADS wins")
    fuse: Literal["auto"] | int = Field(
        "auto", description="trials trained together as one batched model: auto (built-in "
                            "mlp, K from the model size and the device), 1 (off) or K")
    function: str | None = Field(
        None, description="your own training function instead of the built-in trainer: "
                          "file.py:train or package.module:train, called as train(params, "
                          "trial); it calls trial.report(epoch, metric=value) each epoch")
    command: str | None = Field(
        None, description="any program instead of the built-in trainer, parameters written "
                          "{name}: it prints a JSON line per epoch, e.g. {\"epoch\": 3, "
                          "\"val_accuracy\": 0.91}")
    stop_grace: float = Field(10.0, ge=0, le=3600,
                              description="command trials: seconds between SIGTERM and SIGKILL "
                                          "when a trial is pruned, cut or interrupted")
    trial_timeout: float | None = Field(
        None, gt=0, description="your own code's trials: seconds one trial may run before it "
                                "fails (a program that hangs)")

    @property
    def kind(self) -> Literal["builtin", "function", "command"]:
        """What trains a trial: the built-in trainer, your function or your command."""
        return "function" if self.function else "command" if self.command else "builtin"

    @field_validator("fuse", mode="before")
    @classmethod
    def _fuse(cls, value: Any) -> Any:
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool)
                               and 1 <= value <= 256):
            return value
        raise ValueError(f"{value!r} is not a fuse size; use auto, 1 (off) or a whole "
                         "number of trials up to 256")

    @field_validator("threads", mode="before")
    @classmethod
    def _threads(cls, value: Any) -> Any:
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool)
                               and 1 <= value <= 1024):
            return value
        raise ValueError(f"{value!r} is not a thread count; use auto or a whole number from 1")

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not re.match(r"^(auto|cpu|cuda(:\d+)?|mps)$", value):
            raise ValueError(f"{value!r} is not a device; use auto, cpu, cuda or cuda:N")
        return value


class ExportOrigin(Strict):
    study: str
    trial: int
    metric: str
    value: float


class ObjectiveSpec(Strict):
    """One objective of a multi-objective study: a per-epoch metric (the first) or a measure
    of the model (``params``, ``flops``, ``latency_ms``, ...: ``trainer/measures.py``)."""

    metric: str
    direction: Literal["maximize", "minimize"]


_CONSTRAINT_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|<|>)\s*"
                            r"([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


class Constraint(BaseModel):
    """``params <= 200000``: a bound on a measure or metric, written as one string."""

    name: str
    op: str
    bound: float

    @classmethod
    def parse(cls, text: str) -> Constraint:
        match = _CONSTRAINT_RE.match(text)
        if not match:
            raise ValueError(f"{text!r} is not a constraint; write e.g. 'params <= 200000' "
                             "or 'latency_ms <= 2.0'")
        return cls(name=match[1], op=match[2], bound=float(match[3]))

    def violation(self, value: float) -> float:
        """Optuna's constraint value: 0 or less when met, how far off otherwise."""
        return value - self.bound if self.op in ("<=", "<") else self.bound - value

    def __str__(self) -> str:
        return f"{self.name} {self.op} {self.bound:g}"


class StudySpec(Strict):
    """A whole study file."""

    name: str = Field(description="study name in the storage")
    metric: str = Field("val_accuracy", description="the per-epoch metric to optimise")
    direction: Literal["maximize", "minimize"] = "maximize"
    objectives: list[ObjectiveSpec] | None = Field(
        None, description="several objectives (instead of metric/direction): the first a "
                          "per-epoch metric, the rest measures such as params or latency_ms")
    constraints: list[str] = Field(default_factory=list,
                                   description="bounds such as 'params <= 200000'")
    storage: str | None = Field(None, description="Optuna storage URL; default sqlite in the "
                                                  "current folder")
    budget: BudgetSpec = Field(default_factory=BudgetSpec)
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)
    pruner: PrunerSpec = Field(default_factory=PrunerSpec)
    trainer: TrainerSpec = Field(default_factory=TrainerSpec)
    space: dict[str, ParamSpec] = Field(description="the search space, in dependency order")
    exported_from: ExportOrigin | None = Field(
        None, description="set by report --export: the study and trial this configuration "
                          "came from and its value there (tunecli train prints it)")
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

    @model_validator(mode="after")
    def _objectives(self) -> StudySpec:
        if self.objectives is None:
            return self
        first = self.objectives[0] if self.objectives else None
        if first is not None and (("metric" in self.model_fields_set
                                   and self.metric != first.metric)
                                  or ("direction" in self.model_fields_set
                                      and self.direction != first.direction)):
            raise ValueError("write either metric/direction or objectives, not both")
        if len(self.objectives) < 2:
            raise ValueError("objectives needs two or more entries; for one, write metric: "
                             "and direction:")
        # The first objective is what each epoch reports, prunes on and stops early on.
        self.metric, self.direction = self.objectives[0].metric, self.objectives[0].direction
        return self

    @field_validator("constraints")
    @classmethod
    def _constraints(cls, value: list[str]) -> list[str]:
        for text in value:
            Constraint.parse(text)
        return value

    @property
    def directions(self) -> list[Literal["maximize", "minimize"]]:
        return ([o.direction for o in self.objectives] if self.objectives
                else [self.direction])

    @property
    def objective_names(self) -> list[str]:
        return [o.metric for o in self.objectives] if self.objectives else [self.metric]

    @property
    def multi_objective(self) -> bool:
        return bool(self.objectives)

    def describe_aims(self) -> str:
        """'maximize val_accuracy', or 'maximize val_accuracy, minimize params (params <= 2e5)'."""
        aims = ", ".join(f"{d} {m}" for m, d in zip(self.objective_names, self.directions,
                                                     strict=True))
        return aims + (f" ({', '.join(self.constraints)})" if self.constraints else "")

    def parsed_constraints(self) -> list[Constraint]:
        return [Constraint.parse(text) for text in self.constraints]

    def searched(self) -> dict[str, ParamSpec]:
        """The parameters that are sampled (not fixed)."""
        return {k: p for k, p in self.space.items() if p.kind != "value"}

    def stored(self) -> dict[str, Any]:
        """JSON-able form kept with the study, so report/resume need no file; ``base_dir``
        (the study file's folder) comes along, so relative paths resolve from any folder."""
        return {**self.model_dump(mode="json", by_alias=True), "base_dir": self.base_dir}

    def portable(self) -> dict[str, Any]:
        """The spec as a study file that runs from any folder: only the keys that differ from
        their defaults (what a user would write), relative paths (model file, CSV, data root)
        made absolute, no ``base_dir``."""
        data = self.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        trainer = data.setdefault("trainer", {})
        target, sep, func = self.trainer.model.rpartition(":")
        if sep and target.endswith(".py"):
            trainer["model"] = f"{self._absolute(target)}:{func}"
        if isinstance(trainer.get("dataset"), dict) and trainer["dataset"].get("path"):
            trainer["dataset"]["path"] = self._absolute(trainer["dataset"]["path"])
        if trainer.get("data_root"):
            trainer["data_root"] = self._absolute(trainer["data_root"])
        return data

    def _absolute(self, path: str) -> str:
        resolved = Path(path).expanduser()
        if not resolved.is_absolute() and self.base_dir:
            resolved = Path(self.base_dir) / resolved
        return str(resolved.resolve())


