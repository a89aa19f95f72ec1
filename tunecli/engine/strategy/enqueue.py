"""Known configurations first: ``search --enqueue configs.yaml`` runs them before the sampler's,
and ``search --from OTHER`` starts from another study's best trials (a warm start).

The file holds one configuration or a list of them, each a mapping of searched parameters to
values (parameters left out are sampled). Every value is checked against the space before
anything is stored; a configuration already in the study is not queued twice. From another
study, each of its top trials becomes one configuration: the parameters this space also
searches and whose values lie inside it (the rest are sampled), so a study with a changed or
wider space still starts from what was learnt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna

from tunecli import attrs
from tunecli.errors import SpecError, did_you_mean
from tunecli.spec.models import ParamSpec, StudySpec
from tunecli.spec.yamlio import load_yaml_file

__all__ = ["enqueue", "read_configurations", "top_configurations"]


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


def top_configurations(other: optuna.Study, name: str, spec: StudySpec,
                       k: int) -> list[dict[str, Any]]:
    """The ``k`` best completed trials of ``other`` as configurations of ``spec``'s space."""
    from optuna.trial import TrialState

    done = [t for t in other.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.values]
    if not done:
        raise SpecError(f"study '{name}' has no completed trial to start from",
                        source="--from", fix="Run it first, or drop --from.")
    best_first = sorted(done, key=lambda t: t.values[0],  # the first objective
                        reverse=other.directions[0] == optuna.study.StudyDirection.MAXIMIZE)
    searched = spec.searched()
    configs = []
    for trial in best_first[:k]:
        config = {key: value for key, value in trial.params.items()
                  if key in searched and _problem(searched[key], value) is None}
        if config and config not in configs:
            configs.append(config)
    if not configs:
        raise SpecError(f"no parameter of study '{name}' fits the space of '{spec.name}'",
                        source="--from", fix=f"Searched here: {', '.join(searched)}.")
    return configs


def enqueue(study: optuna.Study, configs: list[dict[str, Any]]) -> int:
    """Queue the configurations not yet in the study; how many were queued."""
    queued = 0
    known = [t.params for t in study.get_trials(deepcopy=False)]
    for config in configs:
        if any(all(p.get(k) == v for k, v in config.items()) for p in known):
            continue
        study.enqueue_trial(config, user_attrs={attrs.ENQUEUED: True}, skip_if_exists=True)
        known.append(config)
        queued += 1
    return queued
