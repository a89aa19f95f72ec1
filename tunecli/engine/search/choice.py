"""What ``tunecli train`` trains: a study file fixed to one configuration (``report --export``),
or a stored study's best trial, a given trial, or the front's pick."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState

from tunecli import attrs
from tunecli import spec as spec_module
from tunecli.engine.strategy import space
from tunecli.errors import SpecError
from tunecli.trainer.final import Choice

__all__ = ["from_file", "from_study"]


def from_file(path: Path, epochs: int | None = None) -> Choice:
    """A study file whose every active parameter is fixed (``tunecli report --export``)."""
    spec = spec_module.load(path)
    params = space.trial_config(spec.space, {})
    searched = [k for k, p in spec.space.items() if p.kind != "value" and k in params]
    if searched:
        raise SpecError(f"'{searched[0]}' is still a search range; train needs one configuration",
                        source=str(path), path=f"space.{searched[0]}",
                        fix="Export the best one: tunecli report NAME --export best.yaml, "
                            "or train a trial: tunecli train NAME --trial N.")
    origin = spec.exported_from  # written by report --export: the search's own value
    return Choice(spec, params, epochs or spec.trainer.final_epochs or spec.trainer.epochs,
                  spec.name, str(path), origin.trial if origin else None,
                  origin.value if origin else None)


def from_study(name: str, url: str, trial_number: int | None = None,
               epochs: int | None = None, pick: str | None = None) -> Choice:
    """A stored study's best trial, or trial ``trial_number``, or the front's trial ``pick``
    names (``objectives.pick``); trained for its best epoch."""
    from tunecli.engine.search import studies as study_module
    from tunecli.engine.strategy.objectives import pick as pick_trial

    study, spec = study_module.load(name, url)
    trial: optuna.trial.FrozenTrial | None
    why = ""
    if pick is not None:
        trial, why = pick_trial(study, spec, pick)
    elif trial_number is None:
        trial = study_module.best_trial(study)
        if trial is None:
            raise SpecError(f"study '{name}' has no completed trial to train",
                            source=f"study '{name}'", fix="Run or resume the study first.")
    else:
        trial = _completed_trial(study, trial_number, name)
    best_epoch = trial.user_attrs.get(attrs.BEST_EPOCH)
    return Choice(spec, space.trial_config(spec.space, trial.params),
                  epochs or spec.trainer.final_epochs or best_epoch or spec.trainer.epochs,
                  # the best trial is the study's model; another one is named by its number
                  name if pick is None and trial_number is None
                  else f"{name}-trial{trial.number}", f"study '{name}' trial #{trial.number}",
                  trial.number, trial.values[0] if trial.values else None, why)


def _completed_trial(study: optuna.Study, number: int, name: str) -> optuna.trial.FrozenTrial:
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    complete = sorted(n for n, t in trials.items() if t.state == TrialState.COMPLETE)
    hint = f"Completed trials: {_first_numbers(complete)}." if complete else "Run the study first."
    if number not in trials:
        raise SpecError(f"study '{name}' has no trial #{number}", source="--trial", fix=hint)
    if trials[number].state != TrialState.COMPLETE:
        raise SpecError(f"trial #{number} of '{name}' is {trials[number].state.name.lower()}, "
                        "not complete", source="--trial", fix=hint)
    return trials[number]


def _first_numbers(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:12])
    return shown + (f", ... ({len(numbers)} in all)" if len(numbers) > 12 else "")
