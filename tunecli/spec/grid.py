"""The points of a grid search, counted and listed from the space alone (no Optuna): the
spec's checks count them, the engine queues them."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tunecli.spec.models import ParamSpec, StudySpec

__all__ = ["MAX_GRID_POINTS", "grid_search_space", "grid_size", "grid_values"]

MAX_GRID_POINTS = 10_000  # each point is queued as a trial when the study is created


def grid_search_space(spec: StudySpec) -> dict[str, list[Any]]:
    """Each searched parameter's values on the grid."""
    return {name: grid_values(p, spec.sampler.grid_points) for name, p in spec.searched().items()}


def grid_size(spec: StudySpec) -> int:
    """The points before conditional parameters are folded (an upper bound, cheap to count)."""
    return math.prod(len(v) for v in grid_search_space(spec).values())


def grid_values(param: ParamSpec, points: int) -> list[Any]:
    """The values a grid search tries for one parameter."""
    if param.kind == "choice":
        return list(param.choice or [])
    if param.kind == "int":
        low, high = param.int_  # type: ignore[misc]
        step = int(param.step or 1)
        values = list(range(low, high + 1, step))
        if param.log or len(values) > points * 4:
            # A wide integer range becomes `points` spread values, like a float axis.
            raw = _spread(low, high, points, param.log)
            values = sorted({int(round(v)) for v in raw})
        return values
    if param.kind == "float":
        low, high = param.float_  # type: ignore[misc]
        if param.step:
            count = int(math.floor((high - low) / param.step + 1e-9)) + 1
            return [round(low + i * param.step, 12) for i in range(count)]
        return _spread(low, high, points, param.log)
    return [param.value]


def _spread(low: float, high: float, points: int, log: bool) -> list[float]:
    if log:
        a, b = math.log(low), math.log(high)
        return [float(math.exp(a + (b - a) * i / (points - 1))) for i in range(points)]
    return [float(low + (high - low) * i / (points - 1)) for i in range(points)]
