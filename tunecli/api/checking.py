"""``tunecli validate``: every check ``search`` makes before its first trial, and what the
study would search, without training or storing anything."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tunecli.spec.models import StudySpec

__all__ = ["check", "describe_data", "space_rows"]


def check(spec: StudySpec, data_root: str | None, source: str, *,
          data: bool = True) -> dict[str, Any] | None:
    """Optuna's view of the sampler and pruner options, and with ``data`` the device, the data
    and the model (what was loaded, for the summary): every problem at once, as a
    SpecError."""
    from tunecli.engine.search import preflight

    if not data:
        preflight.check_engine(spec, source)
        return None
    return preflight.preflight(spec, data_root, source)


def space_rows(spec: StudySpec) -> list[tuple[str, str]]:
    """Each searched or fixed parameter and how it is searched, in words."""
    from tunecli.engine.strategy import space

    return [(key, space.describe(param)) for key, param in spec.space.items()]


def describe_data(spec: StudySpec, data_root: str | None) -> list[str]:
    """What the data holds (classes and balance; a CSV's cleaning)."""
    from tunecli.engine.search import preflight

    return preflight.describe_data(spec, data_root)
