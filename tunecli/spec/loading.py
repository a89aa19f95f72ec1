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

from tunecli.errors import SpecError, SpecErrors
from tunecli.spec.checks import check_spec
from tunecli.spec.models import StudySpec
from tunecli.spec.overrides import set_dotted
from tunecli.spec.wording import raise_validation
from tunecli.spec.yamlio import load_yaml_file

__all__ = ["from_stored", "load", "validate"]


def validate(raw: Any, source: str, overrides: dict[str, Any] | None = None,
             base_dir: str | None = None, origins: dict[str, str] | None = None) -> StudySpec:
    """Validate a parsed study (a mapping) with command-line overrides applied. A problem
    with an overridden key is blamed on where the value came from: ``origins`` maps a dotted
    key to its option (``--n-trials``); any other override came from ``--set``."""
    try:
        return _validated(raw, source, overrides, base_dir)
    except SpecError as exc:
        raise _blamed(exc, overrides or {}, origins or {}) from None


def _blamed(exc: SpecError, overrides: dict[str, Any], origins: dict[str, str]) -> SpecError:
    """``exc`` with each problem at an overridden key (or below it) blamed on its option."""
    def origin(error: SpecError) -> SpecError:
        for key in overrides:
            if error.path is not None and (error.path == key
                                           or error.path.startswith(key + ".")):
                return SpecError(error.message, source=origins.get(key, "--set"),
                                 path=error.path, fix=error.fix)
        return error

    errors = [origin(e) for e in (exc.errors if isinstance(exc, SpecErrors) else [exc])]
    return errors[0] if len(errors) == 1 else SpecErrors(errors)


def _validated(raw: Any, source: str, overrides: dict[str, Any] | None,
               base_dir: str | None) -> StudySpec:
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


def load(path: Path, overrides: dict[str, Any] | None = None,
         origins: dict[str, str] | None = None) -> StudySpec:
    """Read and validate a study file; ``overrides`` maps dotted keys to values from options
    (``origins``: which option gave a key, for the messages; ``--set`` otherwise)."""
    raw = load_yaml_file(path)
    if isinstance(raw, dict) and "base_dir" in raw:
        raise SpecError("unknown key 'base_dir'", source=str(path), path="base_dir",
                        fix="Remove it.")
    return validate(raw, str(path), overrides, base_dir=str(path.resolve().parent),
                    origins=origins)


def from_stored(stored: dict[str, Any], source: str,
                overrides: dict[str, Any] | None = None,
                origins: dict[str, str] | None = None) -> StudySpec:
    """The spec kept with a study (see ``StudySpec.stored``), with ``overrides`` applied."""
    stored = dict(stored)
    base_dir = stored.pop("base_dir", None)
    return validate(stored, source, overrides, base_dir=base_dir, origins=origins)


