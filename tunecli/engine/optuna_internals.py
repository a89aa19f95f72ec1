"""The one place tunecli reaches past Optuna's public API.

Optuna has no public call that writes a user attribute of a trial that another process started
(``Trial.set_user_attr`` needs the live ``Trial``), and recovery must record why it failed a lost
trial. Nor, since Optuna 5, one for a study's system attributes, where tunecli keeps the study's
spec: as a user attribute it made every row of ``optuna studies`` thousands of characters wide.
Everything else uses public calls: trials are found by ``number``, finished with ``study.tell``,
and grid points read from ``FrozenTrial.system_attrs``. A test
(``tests/test_optuna_internals.py``) pins this module to the installed Optuna, so a release that
moves these internals breaks that test, not resume.
"""

from __future__ import annotations

from typing import Any

import optuna

__all__ = ["set_trial_user_attr", "study_system_attrs", "set_study_system_attr"]


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
