"""Running a study: create or continue it, run trials to the budget, survive interruptions.

Budget: ``n_trials`` counts *finished* trials (complete + pruned) in the storage, over every run
and every worker, so a resumed study ends with exactly that many. Before each trial a worker
checks the count (running trials included, as claims); a worker that loses a race to another
marks its surplus trial failed with ``surplus`` set, which reports leave out.

What else a run needs lives beside this module: ``objective`` (one trial), ``signals``
(Ctrl-C/SIGTERM), ``recovery`` (lost trials are retried with the same parameters, continuing
from their last checkpoint; how trials are counted).

Everything ``search`` resolved is stored with the study (the spec, the study file's folder, the
data root), so ``resume``, workers, ``train`` and ``report`` run the same study from any folder.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.markup import escape

from tunecli import samplers
from tunecli import spec as spec_module
from tunecli import storage as storage_module
from tunecli.errors import SpecError, StudyFailed, TrialFailed
from tunecli.objective import Objective, Surplus
from tunecli.progress import SearchProgress
from tunecli.recovery import count_trials, is_lost, queue_retries, reap_lost_trials
from tunecli.signals import Interrupted, StopSignals
from tunecli.spec import StudySpec
from tunecli.tracking import TensorBoardLog

__all__ = ["SPEC_ATTR", "open_for_search", "load", "run", "count_trials", "RunOutcome",
           "Interrupted", "study_names", "reap_lost_trials", "best_trial",
           "with_resolved_data_root"]

SPEC_ATTR = "tunecli:spec"


@dataclass
class RunOutcome:
    study: optuna.Study
    counts: dict[str, int]
    stopped_by: str                # budget | timeout | grid | interrupted | failures | elsewhere
    failures_this_run: int = 0
    last_failure: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # we print our own trial lines
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    return [s.study_name for s in storage.get_all_studies()]


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:
        return None


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


def open_for_search(spec: StudySpec, url: str, source: str) -> optuna.Study:
    """Create the study, or continue it when its stored spec measures the same thing.

    Only the process that creates the study samples with ``sampler.seed`` itself; any other
    gets a seed of its own (``samplers.run_seed``), so it does not repeat the first run's draws.
    """
    _quiet_optuna()
    storage = storage_module.open_storage(url)
    pruner = samplers.make_pruner(spec)
    if spec.name not in study_names(storage):
        try:
            study = optuna.create_study(study_name=spec.name, storage=storage,
                                        sampler=samplers.make_sampler(spec, first_run=True),
                                        pruner=pruner, direction=spec.direction)
        except optuna.exceptions.DuplicatedStudyError:
            pass  # another process created it a moment ago: continue it below
        else:
            study.set_user_attr(SPEC_ATTR, spec.stored())
            study.set_user_attr("tunecli:metric", spec.metric)
            return study
    study = optuna.load_study(study_name=spec.name, storage=storage,
                              sampler=samplers.make_sampler(spec, first_run=False), pruner=pruner)
    stored = study.user_attrs.get(SPEC_ATTR)
    if stored is None:
        raise SpecError(f"study '{spec.name}' exists in {storage_module.describe(url)} but was "
                        "not made by tunecli", source=source, path="name",
                        fix="Choose another name with --name.")
    diff = spec_module.objective_diff(stored, spec.stored())
    if diff:
        raise SpecError(f"study '{spec.name}' already exists with a different spec, and "
                        f"mixing its trials would compare unlike things: {'; '.join(diff)}",
                        source=source, path="name",
                        fix="Run it under a new name with --name NEW (or --fork), or undo "
                            "the change to continue the stored study.")
    study.set_user_attr(SPEC_ATTR, spec.stored())  # budget/sampler changes are allowed
    return study


def load(name: str, url: str, *, overrides: dict[str, Any] | None = None
         ) -> tuple[optuna.Study, StudySpec]:
    """An existing tunecli study and its stored spec (for resume, report and train).

    Never creates a storage: a missing file is "no study", with the file's absolute path.
    """
    _quiet_optuna()
    path = storage_module.local_file(url)
    if path is not None and not path.is_file():
        raise SpecError(f"no study named '{name}': there is no storage at "
                        f"{storage_module.describe(url)}",
                        fix="Run it from the folder where you ran tunecli search, or give "
                            "--storage PATH or TUNECLI_STORAGE.")
    storage = storage_module.open_storage(url, create=False)
    names = study_names(storage)
    if name not in names:
        hint = spec_module.did_you_mean(name, names)
        listed = f"Studies there: {', '.join(names[:8])}." if names else "It holds no study yet."
        raise SpecError(f"no study named '{name}' in {storage_module.describe(url)}",
                        fix=hint or listed + " Give the storage with --storage or "
                                             "TUNECLI_STORAGE.")
    probe = optuna.load_study(study_name=name, storage=storage)
    stored = probe.user_attrs.get(SPEC_ATTR)
    if stored is None:
        raise SpecError(f"study '{name}' was not made by tunecli (it has no stored spec)",
                        source=name, fix="Use the optuna CLI or dashboard for it.")
    spec = spec_module.from_stored(dict(stored), f"study '{name}'", overrides)
    study = optuna.load_study(study_name=name, storage=storage,
                              sampler=samplers.make_sampler(spec, first_run=False),
                              pruner=samplers.make_pruner(spec))
    return study, spec


# ---------------------------------------------------------------------------------------------
# The run loop


def run(study: optuna.Study, spec: StudySpec, url: str, console: Console, *,
        data_root: str | None = None, keep_checkpoints: str = "best",
        checkpoints: bool = True, tensorboard: Path | None = None) -> RunOutcome:
    """Run trials until the budget is met, the timeout passes, or the user interrupts.

    ``tensorboard``: a folder for one TensorBoard run per trial (see ``tracking``).
    """
    _quiet_optuna()
    reap_lost_trials(study)
    folder = storage_module.study_folder(url, spec.name) / "checkpoints" if checkpoints else None
    signals = StopSignals()
    tracker = TensorBoardLog(tensorboard, spec.name, spec.metric) if tensorboard else None
    objective = Objective(spec, data_root, folder, signals, tracker)
    budget = spec.budget
    started = time.monotonic()
    trials = study.get_trials(deepcopy=False)
    counts = count_trials(trials)
    failures, last_failure, stopped_by = 0, "", "budget"

    def on_trial_done(st: optuna.Study, frozen: FrozenTrial) -> None:
        nonlocal failures, last_failure
        if frozen.user_attrs.get("surplus"):
            return
        state = frozen.state.name.lower()
        seconds = frozen.duration.total_seconds() if frozen.duration else 0.0
        note = ""
        if frozen.state == TrialState.FAIL and not is_lost(frozen):
            failures += 1
            last_failure = str(frozen.user_attrs.get("fail_reason", "unknown error"))
            note = f"[red]{escape(last_failure)}[/]"
        elif frozen.state == TrialState.PRUNED:
            note = f"after epoch {frozen.last_step}"
        value = frozen.value if frozen.state == TrialState.COMPLETE else None
        progress.trial_done(frozen.number, state, value, frozen.params, seconds, note)
        _tidy_checkpoints(st, objective, frozen, keep_checkpoints)

    with SearchProgress(console, spec.name, spec.metric, budget.n_trials, budget.timeout,
                        counts["finished"]) as progress, signals:
        while True:
            if signals.requested:  # a signal between trials
                stopped_by = "interrupted"
                break
            trials = study.get_trials(deepcopy=False)
            counts = count_trials(trials)
            best = best_trial(study)
            progress.update(counts, (best.value, best.params)
                            if best is not None and best.value is not None else None)
            finished = counts["finished"]
            if budget.n_trials is not None and finished >= budget.n_trials:
                stopped_by = "budget"
                break
            if budget.n_trials is not None and finished + counts["running"] >= budget.n_trials:
                # The last trials run elsewhere, unless their worker died: then retry them here.
                reap_lost_trials(study)
                running = count_trials(study.get_trials(deepcopy=False))["running"]
                if finished + running >= budget.n_trials:
                    stopped_by = "elsewhere"
                    break
                continue
            if budget.timeout is not None and time.monotonic() - started >= budget.timeout:
                stopped_by = "timeout"
                break
            if isinstance(study.sampler, optuna.samplers.GridSampler) and \
                    study.sampler.is_exhausted(study):
                stopped_by = "grid"
                break
            if failures > budget.max_failures:
                stopped_by = "failures"
                break
            try:
                study.optimize(objective, n_trials=1, catch=(TrialFailed, Surplus),
                               callbacks=[on_trial_done], gc_after_trial=False)
            except KeyboardInterrupt:
                stopped_by = "interrupted"
                break
        if stopped_by == "interrupted":
            queue_retries(study)
        counts = count_trials(study.get_trials(deepcopy=False))
    outcome = RunOutcome(study, counts, stopped_by, failures, last_failure)
    if stopped_by != "interrupted" and counts["complete"] == 0 and failures:
        raise StudyFailed(f"no trial completed; {failures} failed, the last because: "
                          f"{last_failure}")
    if stopped_by == "failures":
        raise StudyFailed(f"stopped after {failures} failed trials (budget.max_failures is "
                          f"{budget.max_failures}); the last failed because: {last_failure}")
    return outcome


def _tidy_checkpoints(study: optuna.Study, objective: Objective, frozen: FrozenTrial,
                      keep: str) -> None:
    """Finished trials need no checkpoint; keep them all, the best's only, or none."""
    if objective.checkpoints is None or keep == "all":
        return
    path = objective.checkpoint_for(frozen)
    if path is None or is_lost(frozen):
        return  # a lost trial's checkpoint is what its retry continues from
    best = best_trial(study)
    best_path = objective.checkpoint_for(best) if best is not None else None
    if keep == "best" and frozen.state == TrialState.COMPLETE and path == best_path:
        for old in objective.checkpoints.glob("trial-*.pt"):
            if old != path and not _is_pending(study, old):
                old.unlink(missing_ok=True)
        return
    path.unlink(missing_ok=True)


def _is_pending(study: optuna.Study, checkpoint: Path) -> bool:
    number = int(checkpoint.stem.split("-")[1])
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        if t.user_attrs.get("retry_of", t.number) == number:
            return True
    return False
