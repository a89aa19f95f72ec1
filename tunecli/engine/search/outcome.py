"""How a trial ended, decided in one place for every runner, and told to Optuna.

Complete: it trained (the value is stored). Pruned: the pruner stopped it. Failed: its
configuration failed (``TrialFailed``, or an error in user code), with the reason stored. Lost:
its process stopped it (an interrupt, the time limit) and it is retried with the same parameters
(``recovery``). Bad input (``SpecError``) is none of these: it stops the search.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tunecli import attrs
from tunecli.engine.search.signals import StopSignals
from tunecli.errors import SpecError, TrialCut, TrialFailed

__all__ = ["Ended", "ended", "record_failure", "state_word", "stops_search", "tell"]

# What a runner hands the driver for each trial: its value(s), or what stopped it.
Ended = float | list[float] | BaseException


def ended(outcome: Any) -> tuple[TrialState, str | None]:
    """The state a trial ends in, and why for a failed or lost one. ``outcome``: the trainer's
    result, or what stopped the trial."""
    if not isinstance(outcome, BaseException):
        return TrialState.COMPLETE, None
    if isinstance(outcome, optuna.TrialPruned):
        return TrialState.PRUNED, None
    if isinstance(outcome, TrialFailed | TrialCut):
        return TrialState.FAIL, outcome.reason
    if isinstance(outcome, KeyboardInterrupt):
        return TrialState.FAIL, attrs.INTERRUPTED
    if isinstance(outcome, SpecError):
        return TrialState.FAIL, None
    return TrialState.FAIL, f"{type(outcome).__name__}: {outcome}"


def record_failure(trial: optuna.Trial, outcome: BaseException) -> TrialState:
    """Store why the trial failed or was lost (nothing for a prune); its final state."""
    state, reason = ended(outcome)
    if reason is not None:
        trial.set_user_attr(attrs.FAIL_REASON, reason)
    return state


def state_word(state: TrialState, reason: str | None) -> str:
    """The word a trial line and a tracker use: complete, pruned, fail, interrupted or cut."""
    if state != TrialState.FAIL or reason is None:
        return "fail" if state == TrialState.FAIL else state.name.lower()
    if reason.startswith(attrs.TIME_LIMIT):
        return "cut"
    return "interrupted" if reason.startswith(attrs.INTERRUPTED) else "fail"


def stops_search(outcome: Any) -> bool:
    """Whether what ended a trial also stops the search: bad input (``SpecError``) or a signal
    (``KeyboardInterrupt``, ``SystemExit``); any other exception fails that trial only."""
    return isinstance(outcome, SpecError) or (isinstance(outcome, BaseException)
                                              and not isinstance(outcome, Exception))


def tell(study: optuna.Study, trial: optuna.Trial, outcome: Ended,
         signals: StopSignals) -> FrozenTrial:
    """Store how ``trial`` ended: its reason, then its state and value(s) through Optuna."""
    # A signal must not cut a storage write in half.
    with signals.held(then_stop=not stops_search(outcome)):
        if not isinstance(outcome, BaseException):
            return study.tell(trial, outcome)
        return study.tell(trial, state=record_failure(trial, outcome))
