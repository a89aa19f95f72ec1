"""The one place tunecli reaches past Optuna's public API.

Optuna has no public call that writes a user attribute of a trial that another process started
(``Trial.set_user_attr`` needs the live ``Trial``), and recovery must record why it failed a lost
trial. Nor, since Optuna 5, one for a study's system attributes, where tunecli keeps the study's
spec: as a user attribute it made every row of ``optuna studies`` thousands of characters wide.
Everything else uses public calls: trials are found by ``number``, finished with ``study.tell``,
and grid points read from ``FrozenTrial.system_attrs``. Fused trials are asked and told by hand,
not through ``study.optimize``, so they start Optuna's heartbeat themselves (``heartbeats``).
A test
(``tests/test_optuna_internals.py``) pins this module to the installed Optuna, so a release that
moves these internals breaks that test, not resume.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import optuna

__all__ = ["set_trial_user_attr", "study_system_attrs", "set_study_system_attr", "ask",
           "heartbeats"]


def set_trial_user_attr(study: optuna.Study, number: int, key: str, value: Any) -> None:
    """Set a user attribute of trial ``number``, whichever process runs or ran it."""
    storage = study._storage
    trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    storage.set_trial_user_attr(trial_id, key, value)


def study_system_attrs(study: optuna.Study) -> dict[str, Any]:
    """The study's system attributes (kept by Optuna, shown by neither its CLI nor dashboard)."""
    return dict(study._storage.get_study_system_attrs(study._study_id))


def set_study_system_attr(study: optuna.Study, key: str, value: Any) -> None:
    study._storage.set_study_system_attr(study._study_id, key, value)


def ask(study: optuna.Study) -> optuna.Trial:
    """``study.ask()``, without the warning that a heartbeat storage expects ``optimize``:
    ``heartbeats`` keeps the trials alive instead."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Heartbeat of storage")
        return study.ask()


@contextmanager
def heartbeats(study: optuna.Study, trials: Callable[[], list[optuna.Trial]]) -> Iterator[None]:
    """Record Optuna's heartbeat for ``trials()`` (the open ones) while the block runs, as
    ``study.optimize`` does for its one trial, so another machine can tell they still run."""
    from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled

    storage = study._storage
    if not isinstance(storage, BaseHeartbeat) or not is_heartbeat_enabled(storage):
        yield
        return
    interval = storage.get_heartbeat_interval()
    assert interval is not None
    stop = threading.Event()

    def beat() -> None:
        while True:
            for trial in trials():
                storage.record_heartbeat(trial._trial_id)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name="tunecli-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
