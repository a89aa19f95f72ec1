"""The function runner: your own training function, ``trainer.function: train.py:train``,
called in this process as ``train(params, trial)`` (``own_code.OwnTrial``)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import optuna

from tunecli.engine.search.runners.own_code import OwnTrial
from tunecli.errors import SpecError, TrialFailed

if TYPE_CHECKING:
    from tunecli.engine.search.kit import RunnerKit
    from tunecli.spec.models import StudySpec

__all__ = ["load", "train"]

_LOADED: dict[tuple[str, str | None], Callable[..., Any]] = {}


def load(spec: StudySpec) -> Callable[..., Any]:
    """The function ``trainer.function`` names, imported once and checked: it takes
    ``(params, trial)``; a SpecError says what is wrong."""
    from tunecli.trainer.user_code import import_function

    reference = spec.trainer.function
    assert reference is not None
    key = (reference, spec.base_dir)
    if key not in _LOADED:
        function = import_function(reference, spec.base_dir, "trainer.function")
        try:
            inspect.signature(function).bind(None, None)
        except TypeError:
            raise SpecError(f"{reference} cannot be called as train(params, trial)",
                            path="trainer.function",
                            fix="Define it as def train(params, trial): ...") from None
        except ValueError:  # no signature to read (a builtin): let the call tell
            pass
        _LOADED[key] = function
    return _LOADED[key]


def train(kit: RunnerKit, trial: optuna.Trial, params: dict[str, Any]) -> float | list[float]:
    """Call your function for one trial: its value(s); what stopped it is raised."""
    function = load(kit.spec)
    own = OwnTrial(kit, trial, params)
    try:
        with kit.signals.interruptible():
            returned = function(dict(params), own)
    finally:
        own.store_history()
    return own.finish(kit, _final_metrics(returned, own.metric))


def _final_metrics(returned: Any, metric: str) -> dict[str, float] | None:
    """What the function returned, as metrics: a number is the metric's value, a mapping
    names several, None leaves the last report's."""
    if returned is None:
        return None
    if isinstance(returned, dict):
        return {str(k): v for k, v in returned.items()}
    if isinstance(returned, int | float) and not isinstance(returned, bool):
        return {metric: float(returned)}
    raise TrialFailed(f"the function returned {type(returned).__name__} {returned!r}: return "
                      f"the value of {metric!r}, a dict of metrics, or None")
