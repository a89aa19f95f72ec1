"""The search space: from ``space:`` entries to Optuna's ``trial.suggest_*`` calls.

Parameters are sampled in the order written, so a conditional parameter (``when:``) sees the
values of the parameters it depends on. An inactive parameter is not sampled at all, which keeps
it out of the trial's params and out of the samplers' models.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import optuna

from tunecli.spec.grid import grid_values

if TYPE_CHECKING:
    from tunecli.spec.models import ParamSpec  # types only: the spec imports the registries


__all__ = [
    "center_config",
    "default_config",
    "describe",
    "distribution",
    "first_config",
    "grid_values",
    "is_active",
    "suggest",
    "trial_config",
]


def is_active(param: ParamSpec, values: Mapping[str, Any]) -> bool:
    """True when every ``when:`` condition holds for the values sampled so far."""
    for parent, wanted in (param.when or {}).items():
        if parent not in values:
            return False
        options = wanted if isinstance(wanted, list) else [wanted]
        if values[parent] not in options:
            return False
    return True


def suggest(trial: optuna.Trial, space: Mapping[str, ParamSpec]) -> dict[str, Any]:
    """Sample every active parameter of ``space`` on ``trial``; fixed values pass through."""
    values: dict[str, Any] = {}
    for name, param in space.items():
        if not is_active(param, values):
            continue
        values[name] = _suggest_one(trial, name, param)
    return values


def distribution(param: ParamSpec) -> optuna.distributions.BaseDistribution:
    """The Optuna distribution that ``suggest`` asks for (samplers with a fixed space use it)."""
    import warnings

    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    with warnings.catch_warnings():  # Optuna lowers a high that is off the step's grid; fine
        warnings.simplefilter("ignore")
        if param.kind == "float":
            low, high = param.float_  # type: ignore[misc]
            return FloatDistribution(low, high, log=param.log, step=param.step)
        if param.kind == "int":
            low, high = param.int_  # type: ignore[misc]
            return IntDistribution(low, high, log=param.log, step=int(param.step or 1))
        return CategoricalDistribution(list(param.choice or []))


def _suggest_one(trial: optuna.Trial, name: str, param: ParamSpec) -> Any:
    if param.kind == "float":
        low, high = param.float_  # type: ignore[misc]
        return trial.suggest_float(name, low, high, log=param.log, step=param.step)
    if param.kind == "int":
        low, high = param.int_  # type: ignore[misc]
        return trial.suggest_int(name, low, high, log=param.log, step=int(param.step or 1))
    if param.kind == "choice":
        return trial.suggest_categorical(name, param.choice)  # type: ignore[arg-type]
    return param.value


def trial_config(space: Mapping[str, ParamSpec], params: Mapping[str, Any]) -> dict[str, Any]:
    """A stored trial's full configuration: its sampled params plus the active fixed values."""
    values: dict[str, Any] = {}
    for name, param in space.items():
        if not is_active(param, values):
            continue
        values[name] = param.value if param.kind == "value" else params.get(name)
    return values


def first_config(space: Mapping[str, ParamSpec]) -> dict[str, Any]:
    """One configuration without sampling (each range's low end, each first choice), for
    building the model once before a search starts."""
    values: dict[str, Any] = {}
    for name, param in space.items():
        if not is_active(param, values):
            continue
        if param.kind in ("float", "int"):
            low = (param.float_ or param.int_)[0]  # type: ignore[index]
            values[name] = int(low) if param.kind == "int" else float(low)
        elif param.kind == "choice":
            values[name] = (param.choice or [None])[0]
        else:
            values[name] = param.value
    return values


def center_config(space: Mapping[str, ParamSpec]) -> dict[str, Any]:
    """The centre of the space, which Google Vizier tries first: each range's midpoint
    (geometric on a log scale, on the step's grid), a numeric choice's middle value, a named
    choice's first (the one a user lists first is their best guess). Sampled parameters only."""
    return _one_config(space, lambda name, param: _middle(param))


def default_config(space: Mapping[str, ParamSpec],
                   defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The trainer's own defaults moved into the space, as SMAC's initial design starts from
    the default configuration: a default outside a range becomes its nearest end (no dropout
    -> the lowest rate searched), one not among a choice's values its nearest value (numbers)
    or the centre's pick. Parameters without a default take the centre. Sampled ones only."""
    def pick(name: str, param: ParamSpec) -> Any:
        default = defaults.get(name)
        return _middle(param) if default is None else _projected(param, default)
    return _one_config(space, pick)


def _one_config(space: Mapping[str, ParamSpec],
                pick: Callable[[str, ParamSpec], Any]) -> dict[str, Any]:
    """The sampled parameters of one configuration, each active one given by ``pick``."""
    values: dict[str, Any] = {}
    sampled: dict[str, Any] = {}
    for name, param in space.items():
        if not is_active(param, values):
            continue
        values[name] = param.value
        if param.kind != "value":
            values[name] = sampled[name] = pick(name, param)
    return sampled


def _middle(param: ParamSpec) -> Any:
    """One parameter's centre (see ``center_config``)."""
    if param.kind in ("float", "int"):
        low, high = (param.float_ or param.int_)  # type: ignore[misc]
        return _on_grid(param, math.sqrt(low * high) if param.log else (low + high) / 2)
    choices = list(param.choice or [])
    return (sorted(choices, key=float)[len(choices) // 2]  # type: ignore[arg-type]
            if all(map(_is_number, choices)) else choices[0])


def _projected(param: ParamSpec, value: Any) -> Any:
    """``value`` moved to the nearest value ``param`` can take."""
    if param.kind in ("float", "int"):
        if not _is_number(value):
            return _middle(param)
        low, high = (param.float_ or param.int_)  # type: ignore[misc]
        return _on_grid(param, min(max(float(value), low), high))
    choices = list(param.choice or [])
    if value in choices and all(type(c) is type(value) for c in choices if c == value):
        return value
    if _is_number(value) and choices and all(map(_is_number, choices)):
        return min(choices, key=lambda c: abs(float(c) - value))  # type: ignore[arg-type]
    return _middle(param)


def _on_grid(param: ParamSpec, x: float) -> Any:
    """``x`` (inside the range) on the step's grid, as the parameter's type."""
    if param.step:
        low, high = (param.float_ or param.int_)  # type: ignore[misc]
        x = min(low + round((x - low) / param.step) * param.step, high)
    return int(round(x)) if param.kind == "int" else float(x)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def describe(param: ParamSpec) -> str:
    """A short human form, e.g. 'float [1e-05, 0.1] log'."""
    if param.kind in ("float", "int"):
        low, high = param.float_ or param.int_  # type: ignore[misc]
        text = f"{param.kind} [{low:g}, {high:g}]"
        if param.log:
            text += " log"
        if param.step:
            text += f" step {param.step:g}"
    elif param.kind == "choice":
        text = "choice " + ", ".join(str(c) for c in param.choice or [])
    else:
        text = f"fixed {param.value}"
    if param.when:
        conds = " and ".join(f"{k} in {v}" if isinstance(v, list) else f"{k} = {v}"
                             for k, v in param.when.items())
        text += f"  (when {conds})"
    return text
