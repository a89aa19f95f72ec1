"""A study in the storage: create or continue it for a search, or load it for resume, report
and train.

Everything ``search`` resolved is stored with the study (the spec, the study file's folder, the
data root), so ``resume``, workers, ``train`` and ``report`` run the same study from any folder.
The process that creates a study samples from ``sampler.seed``; every other gets its own seed.
"""

from __future__ import annotations

from typing import Any

import optuna

from tunecli import attrs
from tunecli.engine.store import storage as storage_module
from tunecli.engine.store.optuna_internals import set_study_system_attr, study_system_attrs
from tunecli.engine.strategy import grid_queue, pruners, samplers
from tunecli.engine.strategy.objectives import best_trial
from tunecli.errors import SpecError, did_you_mean
from tunecli.spec.diff import objective_diff
from tunecli.spec.loading import from_stored
from tunecli.spec.models import StudySpec

__all__ = [
    "SPEC_ATTR",
    "best_trial",
    "load",
    "open_for_search",
    "store_spec",
    "stored_spec",
    "study_names",
    "with_resolved_data_root",
]

SPEC_ATTR = "tunecli:spec"


def stored_spec(study: optuna.Study) -> dict[str, Any] | None:
    """The spec kept with the study: a system attribute (studies of older tunecli versions
    kept it as a user attribute, which is still read)."""
    spec = study_system_attrs(study).get(SPEC_ATTR)
    if spec is None:
        spec = study.user_attrs.get(SPEC_ATTR)
    return dict(spec) if isinstance(spec, dict) else None


def store_spec(study: optuna.Study, spec: dict[str, Any]) -> None:
    """Keep the spec where tunecli reads it and Optuna's own views (``optuna studies``, the
    dashboard) do not print it; the metric stays a short user attribute for them."""
    set_study_system_attr(study, SPEC_ATTR, spec)


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    return [s.study_name for s in storage.get_all_studies()]


# ---------------------------------------------------------------------------------------------
# Opening studies


def with_resolved_data_root(spec: StudySpec, option: str | None) -> StudySpec:
    """The spec with the data root this run uses (option, TUNECLI_DATA or the file's) made
    absolute, so the stored study finds its data again from any folder."""
    from tunecli.trainer.data import resolve_data_root

    root = resolve_data_root(spec.trainer.data_root, spec.base_dir, option)
    if root is None:
        return spec
    trainer = spec.trainer.model_copy(update={"data_root": str(root)})
    return spec.model_copy(update={"trainer": trainer})


def open_for_search(spec: StudySpec, url: str, source: str, *,
                    known_first: bool = False) -> optuna.Study:
    """Create the study, or continue it when its stored spec measures the same thing.

    Only the process that creates the study samples with ``sampler.seed`` itself; any other
    gets a seed of its own (``samplers.run_seed``), so it does not repeat the first run's draws.
    A new study's first trials are the trainer's defaults and the space's centre
    (``samplers.starting_points``) unless the user gives known configurations to run first
    (``known_first``).
    """
    storage_module.quiet_optuna()
    storage = storage_module.open_storage(url)
    pruner = pruners.make_pruner(spec)
    if spec.name not in study_names(storage):
        try:
            study = optuna.create_study(study_name=spec.name, storage=storage,
                                        sampler=samplers.make_sampler(spec, first_run=True),
                                        pruner=pruner,
                                        directions=list(spec.directions))
        except optuna.exceptions.DuplicatedStudyError:
            pass  # another process created it a moment ago: continue it below
        else:
            store_spec(study, spec.stored())
            study.set_user_attr(attrs.STUDY_METRIC, spec.metric)
            if not known_first:
                for mark, config in samplers.starting_points(spec):
                    study.enqueue_trial(config, user_attrs={mark: True})
            grid_queue.queue_grid(study, spec, creating=True)
            _drop_stale_checkpoints(url, spec.name)
            return study
    study = optuna.load_study(study_name=spec.name, storage=storage,
                              sampler=samplers.make_sampler(spec, first_run=False), pruner=pruner)
    stored = stored_spec(study)
    if stored is None:
        raise SpecError(f"study '{spec.name}' exists in {storage_module.describe(url)} but was "
                        "not made by tunecli", source=source, path="name",
                        fix="Choose another name with --name.")
    diff = objective_diff(stored, spec.stored())
    if diff:
        raise SpecError(f"study '{spec.name}' already exists with a different spec, and "
                        f"mixing its trials would compare unlike things: {'; '.join(diff)}",
                        source=source, path="name",
                        fix="Run it under a new name with --name NEW (or --fork), or undo "
                            "the change to continue the stored study.")
    store_spec(study, spec.stored())  # budget/sampler changes are allowed
    grid_queue.queue_grid(study, spec, creating=False)
    return study


def _drop_stale_checkpoints(url: str, name: str) -> None:
    """A new study has no trials, so checkpoints under its name belong to an earlier study of
    that name whose storage was deleted by hand: a trial must never continue one of them."""
    folder = storage_module.study_folder(url, name) / "checkpoints"
    for old in folder.glob("trial-*.pt"):
        old.unlink(missing_ok=True)


def load(name: str, url: str, *, overrides: dict[str, Any] | None = None,
         origins: dict[str, str] | None = None) -> tuple[optuna.Study, StudySpec]:
    """An existing tunecli study and its stored spec (for resume, report and train).

    Never creates a storage: a missing file is "no study", with the file's absolute path.
    """
    storage_module.quiet_optuna()
    path = storage_module.local_file(url)
    if path is not None and not path.is_file():
        raise SpecError(f"no study named '{name}': there is no storage at "
                        f"{storage_module.describe(url)}",
                        fix="Run it from the folder where you ran tunecli search, or give "
                            "--storage PATH or TUNECLI_STORAGE.")
    storage = storage_module.open_storage(url, create=False)
    names = study_names(storage)
    if name not in names:
        hint = did_you_mean(name, names)
        listed = f"Studies there: {', '.join(names[:8])}." if names else "It holds no study yet."
        raise SpecError(f"no study named '{name}' in {storage_module.describe(url)}",
                        fix=hint or listed + " Give the storage with --storage or "
                                             "TUNECLI_STORAGE.")
    probe = optuna.load_study(study_name=name, storage=storage)
    stored = stored_spec(probe)
    if stored is None:
        raise SpecError(f"study '{name}' was not made by tunecli (it has no stored spec)",
                        source=name, fix="Use the optuna CLI or dashboard for it.")
    spec = from_stored(dict(stored), f"study '{name}'", overrides, origins)
    study = optuna.load_study(study_name=name, storage=storage,
                              sampler=samplers.make_sampler(spec, first_run=False),
                              pruner=pruners.make_pruner(spec))
    return study, spec
