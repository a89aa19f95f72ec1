"""Whether a changed spec still measures the same thing as a stored study.

Budget, sampler and pruner may change between runs of one study; the metric, the space, the
data and the model may not (their trials could not be compared).
"""

from __future__ import annotations

import contextlib
from typing import Any

from pydantic import ValidationError

from tunecli.spec.models import StudySpec

__all__ = ["objective_diff"]


# Parts of the spec that change what a trial's value means. Budget, sampler and pruner may
# change between runs; the data's location and the device may differ between machines.
_MACHINE_LOCAL = {("trainer", "data_root"), ("trainer", "device"), ("trainer", "download"),
                  ("trainer", "eval_batch_size"), ("trainer", "compile"),
                  ("trainer", "fuse"),  # fused members equal lone trials
                  ("trainer", "final_epochs")}  # used by `tunecli train` only


def _objective_view(stored: dict[str, Any]) -> dict[str, Any]:
    # With this version's defaults filled in, so a study stored before a key existed still
    # matches a file that leaves the key at its default.
    with contextlib.suppress(ValidationError):
        stored = StudySpec.model_validate({k: v for k, v in stored.items()
                                           if k != "base_dir"}).model_dump(mode="json",
                                                                           by_alias=True)
    view = {k: stored.get(k) for k in ("metric", "direction", "objectives", "constraints",
                                       "space", "trainer")}
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
