"""Running a study: create or continue it, run trials to the budget, survive interruptions.

Budget: ``n_trials`` counts *finished* trials (complete + pruned) in the storage, over every run
and every worker, so a resumed study ends with exactly that many. Before each trial a worker
checks the count (running trials included, as claims); a worker that loses a race to another
marks its surplus trial failed with ``surplus`` set, which reports leave out.

Lost trials (Ctrl-C, SIGTERM, a killed process, a lost machine) are failed and queued again
with the same parameters; the retry continues from the original trial's last checkpoint.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.markup import escape

from tunecli import samplers, space, spec as spec_module
from tunecli import storage as storage_module
from tunecli.errors import SpecError, StudyFailed, TrialFailed
from tunecli.progress import SearchProgress
from tunecli.spec import StudySpec
from tunecli.tracking import TensorBoardLog

__all__ = ["SPEC_ATTR", "open_for_search", "load", "run", "count_trials", "RunOutcome",
           "Interrupted", "study_names", "reap_lost_trials"]

SPEC_ATTR = "tunecli:spec"
MAX_RETRIES = 3
_HOST = socket.gethostname()


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM: stop after marking the running trial; resume continues it."""


class _Surplus(Exception):
    """This worker lost the race for the last trial slot to another worker."""


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


def count_trials(trials: list[FrozenTrial]) -> dict[str, int]:
    counts = {"complete": 0, "pruned": 0, "fail": 0, "running": 0, "waiting": 0}
    for t in trials:
        if t.state == TrialState.FAIL and t.user_attrs.get("surplus"):
            continue
        counts[t.state.name.lower()] += 1
    return counts


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------
# Opening studies


def open_for_search(spec: StudySpec, url: str, source: str) -> optuna.Study:
    """Create the study, or continue it when its stored spec measures the same thing."""
    _quiet_optuna()
    storage = storage_module.open_storage(url)
    sampler, pruner = samplers.make_sampler(spec), samplers.make_pruner(spec)
    if spec.name in study_names(storage):
        study = optuna.load_study(study_name=spec.name, storage=storage, sampler=sampler,
                                  pruner=pruner)
        stored = study.user_attrs.get(SPEC_ATTR)
        if stored is None:
            raise SpecError(f"study '{spec.name}' exists in {storage_module.mask(url)} but was "
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
    study = optuna.create_study(study_name=spec.name, storage=storage, sampler=sampler,
                                pruner=pruner, direction=spec.direction)
    study.set_user_attr(SPEC_ATTR, spec.stored())
    study.set_user_attr("tunecli:metric", spec.metric)
    return study


def load(name: str, url: str, *, overrides: dict[str, Any] | None = None
         ) -> tuple[optuna.Study, StudySpec]:
    """An existing tunecli study and its stored spec (for resume and report)."""
    _quiet_optuna()
    storage = storage_module.open_storage(url)
    names = study_names(storage)
    if name not in names:
        hint = spec_module._did_you_mean(name, names)
        listed = f"Studies there: {', '.join(names[:8])}." if names else "It holds no study yet."
        raise SpecError(f"no study named '{name}' in {storage_module.mask(url)}",
                        fix=hint or listed)
    probe = optuna.load_study(study_name=name, storage=storage)
    stored = probe.user_attrs.get(SPEC_ATTR)
    if stored is None:
        raise SpecError(f"study '{name}' was not made by tunecli (it has no stored spec)",
                        source=name, fix="Use the optuna CLI or dashboard for it.")
    spec = spec_module.validate(dict(stored), f"study '{name}'", overrides,
                                base_dir=stored.get("base_dir"))
    study = optuna.load_study(study_name=name, storage=storage,
                              sampler=samplers.make_sampler(spec),
                              pruner=samplers.make_pruner(spec))
    return study, spec


# ---------------------------------------------------------------------------------------------
# Lost trials


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_lost_trials(study: optuna.Study) -> int:
    """Fail RUNNING trials whose worker process on this host is gone; queue their retries.

    Optuna only fails stale trials by heartbeat (RDB storages, after a grace period) and only
    when a worker starts its next trial; a process on this machine can tell at once.
    """
    storage = study._storage
    reaped = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        host, _, pid = str(trial.user_attrs.get("worker", "")).rpartition(":")
        if host == _HOST and pid.isdigit() and not _pid_alive(int(pid)) \
                and int(pid) != os.getpid():
            try:
                storage.set_trial_user_attr(trial._trial_id, "fail_reason",
                                            "lost: its worker process ended")
                storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
                reaped += 1
            except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError):
                pass
    optuna.storages.fail_stale_trials(study)  # heartbeat-stale trials of other hosts
    _queue_retries(study)
    return reaped


def _queue_retries(study: optuna.Study) -> None:
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials if "retry_of" in t.user_attrs}
    attempts: dict[int, int] = {}
    for t in trials:
        if "retry_of" in t.user_attrs:
            attempts[t.user_attrs["retry_of"]] = attempts.get(t.user_attrs["retry_of"], 0) + 1
    for t in trials:
        if t.state != TrialState.FAIL or t.user_attrs.get("surplus"):
            continue
        reason = str(t.user_attrs.get("fail_reason", "lost"))
        if not reason.startswith(("lost", "interrupted")):
            continue
        root = t.user_attrs.get("retry_of", t.number)
        if t.number in retried or attempts.get(root, 0) >= MAX_RETRIES:
            continue
        study.enqueue_trial(t.params, user_attrs={"retry_of": root}, skip_if_exists=False)
        retried.add(t.number)
        attempts[root] = attempts.get(root, 0) + 1


# ---------------------------------------------------------------------------------------------
# The objective


class _StopSignals:
    """Ctrl-C and SIGTERM (what schedulers send before killing) stop the search safely.

    Inside a trial's training the signal interrupts at once (the trial is marked interrupted
    and queued for retry); anywhere else, e.g. while Optuna writes a result, it only asks the
    loop to stop before the next trial, so no write is cut in half.
    """

    def __init__(self) -> None:
        self.requested = False
        self.training = False
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> "_StopSignals":
        def handler(signum: int, frame: Any) -> None:
            already = self.requested
            self.requested = True
            if self.training or already:
                self.training = False
                raise Interrupted(f"signal {signum}")

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self.previous[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread (e.g. some test runners)
                pass
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, previous in self.previous.items():
            signal.signal(sig, previous)

    def raise_if_requested(self) -> None:
        if self.requested:
            raise Interrupted("stop requested")

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """Training: a signal interrupts at once."""
        self.raise_if_requested()
        self.training = True
        try:
            yield
        finally:
            self.training = False

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """A storage write during training: a signal waits for the write, then interrupts."""
        was, self.training = self.training, False
        try:
            yield
        finally:
            self.training = was
        self.raise_if_requested()



class _TrialReporter:
    """The trainer's reporter: each epoch's metric goes to Optuna, which may prune."""

    def __init__(self, trial: optuna.Trial, metric: str, signals: _StopSignals,
                 tracker: TensorBoardLog | None = None) -> None:
        self.trial = trial
        self.metric = metric
        self.signals = signals
        self.tracker = tracker
        self.history: list[dict[str, float]] = []

    def report(self, epoch: int, metrics: dict[str, float]) -> None:
        self.history.append({"epoch": epoch, **metrics})
        if self.tracker is not None:
            self.tracker.epoch(self.trial.number, epoch, metrics)
        # A signal must not cut a storage write in half (it would leave SQLite locked).
        with self.signals.held():
            self.trial.report(metrics[self.metric], epoch)
            prune = self.trial.should_prune()
        if prune:
            raise optuna.TrialPruned(f"pruned after epoch {epoch}")


class _Objective:
    def __init__(self, spec: StudySpec, data_root: str | None, checkpoints: Path | None,
                 signals: _StopSignals, tracker: TensorBoardLog | None = None) -> None:
        self.signals = signals
        self.spec = spec
        self.data_root = data_root
        self.checkpoints = checkpoints
        self.tracker = tracker

    def checkpoint_for(self, trial: optuna.Trial | FrozenTrial) -> Path | None:
        if self.checkpoints is None:
            return None
        root = trial.user_attrs.get("retry_of", trial.number)
        return self.checkpoints / f"trial-{root}.pt"

    def __call__(self, trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", f"{_HOST}:{os.getpid()}")
        n_trials = self.spec.budget.n_trials
        if n_trials is not None and _claims_before(trial) >= n_trials:
            trial.set_user_attr("surplus", True)
            raise _Surplus()
        params = space.suggest(trial, self.spec.space)
        _drop_if_grid_point_taken(trial)
        if self.tracker is None:
            return self._train(trial, params)
        self.tracker.trial_started(trial.number, space.trial_config(self.spec.space,
                                                                    trial.params))
        state, value = "fail", None
        try:
            value = self._train(trial, params)
            state = "complete"
            return value
        except optuna.TrialPruned:
            state = "pruned"
            raise
        except KeyboardInterrupt:
            state = "interrupted"
            raise
        except _Surplus:
            self.tracker.discard(trial.number)  # never a trial of its own: no run
            raise
        finally:
            self.tracker.trial_finished(trial.number, state, value)

    def _train(self, trial: optuna.Trial, params: dict[str, Any]) -> float:
        from tunecli import trainer

        reporter = _TrialReporter(trial, self.spec.metric, self.signals, self.tracker)
        try:
            with self.signals.interruptible():
                result = trainer.run(self.spec.trainer, params, reporter,
                                     metric=self.spec.metric, direction=self.spec.direction,
                                     base_dir=self.spec.base_dir, data_root=self.data_root,
                                     checkpoint=self.checkpoint_for(trial))
        except TrialFailed as exc:
            trial.set_user_attr("fail_reason", exc.reason)
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("fail_reason", "interrupted")
            raise
        except (optuna.TrialPruned, SpecError):
            raise
        except Exception as exc:  # a bug in user code fails this trial, not the study
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}")
            raise TrialFailed(f"{type(exc).__name__}: {exc}") from exc
        finally:
            if reporter.history:
                trial.set_user_attr("history", reporter.history)
        # Again: an earlier trial may have registered this point only after the first check.
        _drop_if_grid_point_taken(trial)
        trial.set_user_attr("history", result.history)
        trial.set_user_attr("best_epoch", result.best_epoch)
        trial.set_user_attr("epochs_run", result.epochs_run)
        trial.set_user_attr("params_count", result.params_count)
        trial.set_user_attr("device", result.device)
        trial.set_user_attr("samples_per_second", round(result.samples_per_second, 1))
        trial.set_user_attr("train_seconds", round(result.train_seconds, 3))
        return result.value


def _drop_if_grid_point_taken(trial: optuna.Trial) -> None:
    """Grid search with several workers: Optuna may hand two racing workers the same point;
    the trial with the lower number keeps it, this one becomes surplus."""
    if not isinstance(trial.study.sampler, optuna.samplers.GridSampler):
        return
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    mine = trial.study._storage.get_trial(trial._trial_id).system_attrs.get("grid_id")
    if any(t.number < trial.number and not t.user_attrs.get("surplus")
           and (t.params == trial.params or (mine is not None
                                             and t.system_attrs.get("grid_id") == mine))
           for t in trial.study.get_trials(deepcopy=False, states=states)):
        trial.set_user_attr("surplus", True)
        raise _Surplus()


def _claims_before(trial: optuna.Trial) -> int:
    """Finished or running trials that started before this one (this worker's race check)."""
    study = trial.study
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    return sum(1 for t in study.get_trials(deepcopy=False, states=states)
               if t.number < trial.number and not t.user_attrs.get("surplus"))


# ---------------------------------------------------------------------------------------------
# The run loop


def preflight(spec: StudySpec, data_root: str | None, source: str) -> None:
    """Load the data and build the model once, so bad input fails before any trial is stored."""
    from tunecli.trainer import loop, models

    try:
        loop.prepare(spec.trainer, spec.metric, spec.base_dir, data_root)
        if spec.trainer.model not in models.MODELS:
            models.resolve_user_model(spec.trainer.model, spec.base_dir)
    except SpecError as exc:
        raise SpecError(exc.message, source=exc.source or source, path=exc.path,
                        fix=exc.fix) from None


def run(study: optuna.Study, spec: StudySpec, url: str, console: Console, *,
        data_root: str | None = None, keep_checkpoints: str = "best",
        checkpoints: bool = True, tensorboard: Path | None = None) -> RunOutcome:
    """Run trials until the budget is met, the timeout passes, or the user interrupts.

    ``tensorboard``: a folder for one TensorBoard run per trial (see ``tracking``).
    """
    _quiet_optuna()
    reap_lost_trials(study)
    folder = storage_module.study_folder(url, spec.name) / "checkpoints" if checkpoints else None
    signals = _StopSignals()
    tracker = TensorBoardLog(tensorboard, spec.name, spec.metric) if tensorboard else None
    objective = _Objective(spec, data_root, folder, signals, tracker)
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
        if frozen.state == TrialState.FAIL:
            failures += 1
            last_failure = str(frozen.user_attrs.get("fail_reason", "unknown error"))
            note = f"[red]{escape(last_failure)}[/]"
        elif frozen.state == TrialState.PRUNED:
            note = f"after epoch {frozen.last_step}"
        value = frozen.value if frozen.state == TrialState.COMPLETE else None
        progress.trial_done(frozen.number, state, value, frozen.params, seconds, note)
        _tidy_checkpoints(st, objective, frozen, keep_checkpoints)

    with SearchProgress(console, spec.name, spec.metric, budget.n_trials, budget.timeout,
                        counts["complete"] + counts["pruned"]) as progress, signals:
        while True:
            if signals.requested:  # a signal between trials
                stopped_by = "interrupted"
                break
            trials = study.get_trials(deepcopy=False)
            counts = count_trials(trials)
            best = best_trial(study)
            progress.update(counts, (best.value, best.params) if best else None)
            finished = counts["complete"] + counts["pruned"]
            if budget.n_trials is not None and finished >= budget.n_trials:
                stopped_by = "budget"
                break
            if budget.n_trials is not None and finished + counts["running"] >= budget.n_trials:
                stopped_by = "elsewhere"  # the last trials run in other workers
                break
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
                study.optimize(objective, n_trials=1, catch=(TrialFailed, _Surplus),
                               callbacks=[on_trial_done], gc_after_trial=False)
            except KeyboardInterrupt:
                stopped_by = "interrupted"
                break
        if stopped_by == "interrupted":
            _queue_retries(study)
        counts = count_trials(study.get_trials(deepcopy=False))
    outcome = RunOutcome(study, counts, stopped_by, failures, last_failure)
    if stopped_by != "interrupted" and counts["complete"] == 0 and failures:
        raise StudyFailed(f"no trial completed; {failures} failed, the last because: "
                          f"{last_failure}")
    if stopped_by == "failures":
        raise StudyFailed(f"stopped after {failures} failed trials (budget.max_failures is "
                          f"{budget.max_failures}); the last failed because: {last_failure}")
    return outcome


def _tidy_checkpoints(study: optuna.Study, objective: _Objective, frozen: FrozenTrial,
                      keep: str) -> None:
    """Finished trials need no checkpoint; keep them all, the best's only, or none."""
    if objective.checkpoints is None or keep == "all":
        return
    path = objective.checkpoint_for(frozen)
    reason = str(frozen.user_attrs.get("fail_reason", ""))
    if path is None or (frozen.state == TrialState.FAIL and reason.startswith(("lost",
                                                                              "interrupted"))):
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
