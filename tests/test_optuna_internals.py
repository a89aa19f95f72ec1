"""tunecli's one reach past Optuna's public API, pinned to the installed Optuna, and the
recovery built on it: if an Optuna release moves these internals, this fails, not resume."""

from __future__ import annotations

import subprocess
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tunecli.engine import recovery
from tunecli.engine.optuna_internals import set_trial_user_attr


def _storages(tmp_path: Path) -> dict[str, object]:
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return {"sqlite": f"sqlite:///{tmp_path / 'x.db'}",
            "journal": JournalStorage(JournalFileBackend(str(tmp_path / "x.journal"))),
            "memory": optuna.storages.InMemoryStorage()}


@pytest.mark.parametrize("kind", ["sqlite", "journal", "memory"])
def test_set_user_attr_of_a_trial_another_process_started(tmp_path: Path, kind: str) -> None:
    study = optuna.create_study(storage=_storages(tmp_path)[kind])  # type: ignore[arg-type]
    study.ask()
    running = study.ask()
    set_trial_user_attr(study, running.number, "fail_reason", "lost: test")
    assert study.trials[running.number].user_attrs["fail_reason"] == "lost: test"


@pytest.mark.parametrize("kind", ["sqlite", "journal", "memory"])
def test_a_trial_of_a_dead_local_process_is_failed_and_queued_again(tmp_path: Path,
                                                                    kind: str) -> None:
    study = optuna.create_study(storage=_storages(tmp_path)[kind])  # type: ignore[arg-type]
    dead = subprocess.Popen(["true"])
    dead.wait()
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    trial.set_user_attr("worker", f"{recovery.HOST}:{dead.pid}")
    alive = study.ask()
    alive.set_user_attr("worker", recovery.worker_id())
    assert recovery.reap_lost_trials(study) == 1
    trials = study.get_trials()
    assert trials[trial.number].state == TrialState.FAIL
    assert trials[trial.number].user_attrs["fail_reason"].startswith("lost")
    assert trials[alive.number].state == TrialState.RUNNING
    retry = [t for t in trials if t.state == TrialState.WAITING]
    assert len(retry) == 1 and retry[0].user_attrs["retry_of"] == trial.number
    recovery.queue_retries(study)  # queued once, however often recovery runs
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 1
    counts = recovery.count_trials(study.get_trials())
    assert (counts["lost"], counts["failed"], counts["finished"]) == (1, 0, 0)


@pytest.mark.parametrize("kind", ["sqlite", "journal", "memory"])
def test_study_system_attributes(tmp_path: Path, kind: str) -> None:
    from tunecli.engine.optuna_internals import set_study_system_attr, study_system_attrs

    study = optuna.create_study(storage=_storages(tmp_path)[kind])  # type: ignore[arg-type]
    set_study_system_attr(study, "tunecli:spec", {"name": "x", "space": {"lr": 0.1}})
    assert study_system_attrs(study)["tunecli:spec"] == {"name": "x", "space": {"lr": 0.1}}
    assert study.user_attrs == {}


def test_heartbeats_keep_hand_asked_trials_alive(tmp_path: Path) -> None:
    """Fused trials are asked by hand; their heartbeat is recorded as optimize's would be (a
    row per trial in Optuna's heartbeat table), so another machine's stale-trial sweep can
    tell they still run."""
    import time
    import warnings

    import sqlalchemy
    from optuna.storages._rdb import models

    from tunecli.engine.optuna_internals import ask, heartbeats

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'h.db'}",
                                         heartbeat_interval=60, grace_period=120)
    study = optuna.create_study(storage=storage)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "supposed to be used with Study.optimize"
        trials = [ask(study), ask(study)]

    def beating() -> set[int]:
        with storage.scoped_session() as session:
            rows = session.execute(sqlalchemy.select(models.TrialHeartbeatModel.trial_id))
            return {row[0] for row in rows}

    with heartbeats(study, lambda: trials):
        deadline = time.time() + 60
        while beating() != {t._trial_id for t in trials}:
            assert time.time() < deadline, "no heartbeat was recorded"
            time.sleep(0.01)
    optuna.storages.fail_stale_trials(study)
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING] * 2
