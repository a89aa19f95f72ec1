"""One entry of a study's search space (``space:``): a range, a choice or a fixed value, with
its log scale, step and ``when:`` condition; and the strict base of every spec model."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_serializer, model_validator

__all__ = ["ParamSpec", "Scalar", "Strict"]

Scalar = str | int | float | bool | None


class Strict(BaseModel):
    """Unknown keys are errors: a typo never passes silently."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ParamSpec(Strict):
    """One search-space entry: exactly one of float, int, choice or value."""

    float_: tuple[float, float] | None = Field(None, alias="float",
                                               description="[low, high] of a real parameter")
    int_: tuple[int, int] | None = Field(None, alias="int",
                                         description="[low, high] of an integer parameter")
    choice: list[Scalar] | None = Field(None, description="categorical choices")
    value: Scalar | list[Scalar] = Field(None, description="a fixed value, not searched")
    log: StrictBool = Field(False, description="sample on a log scale (bounds must be > 0)")
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
            self._check_range(*bounds)
        elif self.log or self.step is not None:
            raise ValueError("log and step apply only to float and int parameters")
        if self.choice is not None and not self.choice:
            raise ValueError("choice needs at least one value")
        if self.choice is not None and len({repr(c) for c in self.choice}) != len(self.choice):
            raise ValueError("choice lists a value twice")
        return self

    def _check_range(self, low: float, high: float) -> None:
        """A float or int range, with its log scale and step."""
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
        if self.step is None:
            return
        if self.log:
            raise ValueError("step and log cannot be combined; drop one of them")
        if self.step <= 0:
            raise ValueError("step must be greater than 0")
        if self.int_ is not None and self.step != int(self.step):
            raise ValueError("an int parameter needs a whole-number step")
