"""Reading a study: a file or a stored spec, with overrides, validated whole.

``load(path, overrides)`` returns a ``StudySpec`` or raises a ``SpecError`` with one line per
problem, naming the file, the dotted key path and the fix.

Example::

    spec = load(Path("studies/digits.yaml"), {"budget.n_trials": 5})
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tunecli.errors import SpecError
from tunecli.spec.checks import check_spec
from tunecli.spec.models import StudySpec
from tunecli.spec.overrides import set_dotted
from tunecli.spec.wording import raise_validation
from tunecli.spec.yamlio import load_yaml_file

__all__ = ["from_stored", "load", "validate"]


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
        set_dotted(raw, dotted, value)  # None is YAML's null, as if written in the file
    try:
        spec = StudySpec.model_validate({**raw, "base_dir": base_dir})
    except ValidationError as exc:
        raise_validation(exc, source)
    check_spec(spec, source)
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


