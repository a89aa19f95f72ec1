"""Known configurations first: ``search --enqueue configs.yaml`` runs them before the sampler's.

The file holds one configuration or a list of them, each a mapping of searched parameters to
values (parameters left out are sampled). Every value is checked against the space before
anything is stored; a configuration already in the study is not queued twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna

from tunecli.errors import SpecError, did_you_mean
from tunecli.spec.models import ParamSpec, StudySpec
from tunecli.spec.yamlio import load_yaml_file

__all__ = ["read_configurations", "enqueue"]


def _problem(param: ParamSpec, value: Any) -> str | None:
    if param.kind == "choice":
        return None if value in (param.choice or []) else f"one of {param.choice}"
    low, high = param.float_ or param.int_  # type: ignore[misc]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"a number in [{low:g}, {high:g}]"
    if param.kind == "int" and float(value) != int(value):
        return f"a whole number in [{low:g}, {high:g}]"
    return None if low <= value <= high else f"in [{low:g}, {high:g}]"


def read_configurations(path: Path, spec: StudySpec) -> list[dict[str, Any]]:
    """The configurations of ``path``, each checked against the spec's search space."""
    raw = load_yaml_file(path)
    configs = raw if isinstance(raw, list) else [raw]
    searched = spec.searched()
    checked = []
    for index, config in enumerate(configs):
        where = f"[{index}]" if isinstance(raw, list) else ""
        if not isinstance(config, dict) or not config:
            raise SpecError("must be a mapping of parameters to values", source=str(path),
                            path=where or None, fix="Write e.g. {lr: 0.01, depth: 2}.")
        for name, value in config.items():
            key = f"{where}.{name}" if where else str(name)
            if name not in searched:
                raise SpecError(f"'{name}' is not a searched parameter of study "
                                f"'{spec.name}'", source=str(path), path=key,
                                fix=did_you_mean(str(name), searched)
                                or f"Searched: {', '.join(searched)}.")
            wrong = _problem(searched[name], value)
            if wrong:
                raise SpecError(f"{value!r} is outside the space", source=str(path), path=key,
                                fix=f"Give {wrong}.")
        checked.append(dict(config))
    return checked


def enqueue(study: optuna.Study, configs: list[dict[str, Any]]) -> int:
    """Queue the configurations not yet in the study; how many were queued."""
    queued = 0
    known = [t.params for t in study.get_trials(deepcopy=False)]
    for config in configs:
        if any(all(p.get(k) == v for k, v in config.items()) for p in known):
            continue
        study.enqueue_trial(config, user_attrs={"enqueued": True}, skip_if_exists=True)
        known.append(config)
        queued += 1
    return queued
