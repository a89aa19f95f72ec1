"""tunecli's one reach past Optuna's public API, pinned to the installed Optuna, and the
recovery built on it: if an Optuna release moves these internals, this fails, not resume."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tunecli import attrs
from tunecli.engine.store import recovery
from tunecli.engine.store.optuna_internals import heartbeats, set_trial_user_attr, trial_id_of


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
    from tunecli.engine.store.optuna_internals import set_study_system_attr, study_system_attrs

    study = optuna.create_study(storage=_storages(tmp_path)[kind])  # type: ignore[arg-type]
    set_study_system_attr(study, "tunecli:spec", {"name": "x", "space": {"lr": 0.1}})
    assert study_system_attrs(study)["tunecli:spec"] == {"name": "x", "space": {"lr": 0.1}}
    assert study.user_attrs == {}


def test_heartbeats_keep_hand_asked_trials_alive(tmp_path: Path) -> None:
    """Fused trials are asked by hand; their heartbeat is recorded as optimize's would be (a
    row per trial in Optuna's heartbeat table), so another machine's stale-trial sweep can
    tell they still run."""
    import warnings

    import sqlalchemy
    from optuna.storages._rdb import models

    from tunecli.engine.store.optuna_internals import ask

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

    with heartbeats(study, lambda: trials, 60):
        deadline = time.time() + 60
        while beating() != {t._trial_id for t in trials}:
            assert time.time() < deadline, "no heartbeat was recorded"
            time.sleep(0.01)
    optuna.storages.fail_stale_trials(study)
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING] * 2


def _two_processes(tmp_path: Path) -> tuple[optuna.Study, optuna.Study]:
    """One study opened twice, as two processes open it (each its own cache)."""
    from tunecli.engine.store.storage import open_storage

    url = f"sqlite:///{tmp_path / 'x.db'}"
    here = optuna.create_study(study_name="s", storage=open_storage(url, heartbeat=False))
    there = optuna.load_study(study_name="s", storage=open_storage(url, heartbeat=False))
    return here, there


def test_trials_running_here_are_kept_not_read_and_others_changes_are_seen(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Trials this process runs stay current from its own writes without being read back;
    another process's trials and what it does to ours are read as before."""
    from optuna.storages._rdb.models import TrialModel

    here, there = _two_processes(tmp_path)
    x = optuna.distributions.FloatDistribution(0, 1)
    mine = [here.ask({"x": x}) for _ in range(3)]
    theirs = there.ask({"x": x})
    read: list[int] = []
    original = here._storage.inner._backend._build_frozen_trial_from_trial_model  # type: ignore[attr-defined]

    def counted(model: TrialModel) -> object:
        read.append(model.number)
        return original(model)

    monkeypatch.setattr(here._storage.inner._backend, "_build_frozen_trial_from_trial_model",  # type: ignore[attr-defined]
                        counted)
    mine[0].report(0.5, 1)
    mine[1].set_user_attr("fused_group", 0)
    mine[2].storage.set_trial_system_attr(mine[2]._trial_id, "claim", 3)
    theirs.report(0.7, 1)
    trials = here.get_trials(deepcopy=False)
    assert read == [theirs.number]  # its own running trials are not read back
    assert trials[mine[0].number].intermediate_values == {1: 0.5}
    assert trials[mine[1].number].user_attrs == {"fused_group": 0}
    assert trials[mine[2].number].system_attrs["claim"] == 3
    assert trials[theirs.number].intermediate_values == {1: 0.7}
    assert [t.params["x"] for t in trials[:3]] == [t.params["x"] for t in mine]
    # Finished out of order (a later trial first): each is read once more, as finished.
    here.tell(mine[2], 0.9)
    here.get_trials(deepcopy=False)
    here.tell(mine[0], state=TrialState.PRUNED)
    states = [t.state for t in here.get_trials(deepcopy=False)]
    assert states[:3] == [TrialState.PRUNED, TrialState.RUNNING, TrialState.COMPLETE]
    assert [t.state for t in there.get_trials()][:3] == states[:3]
    # Another process fails ours (as a stale heartbeat would): our next write fails, and from
    # then on we read the trial as it is.
    there._storage.set_trial_state_values(mine[1]._trial_id, TrialState.FAIL)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        mine[1].report(0.1, 2)
    assert here.get_trials(deepcopy=False)[mine[1].number].state == TrialState.FAIL


def test_a_queued_trial_taken_here_is_kept_with_its_fixed_parameters(tmp_path: Path) -> None:
    here, there = _two_processes(tmp_path)
    there.enqueue_trial({"x": 0.25})
    trial = here.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    assert trial.params == {"x": 0.25}
    trial.report(0.3, 1)
    kept = here.get_trials(deepcopy=False)[trial.number]
    assert (kept.state, kept.params, kept.intermediate_values) == \
        (TrialState.RUNNING, {"x": 0.25}, {1: 0.3})
    here.tell(trial, 1.0)
    assert here.get_trials()[trial.number].state == TrialState.COMPLETE
    assert there.get_trials()[trial.number].value == 1.0


def test_the_installed_optuna_is_a_tested_release() -> None:
    """pyproject's range, TESTED and what CI installs agree: a new Optuna is tested first."""
    from tunecli.engine.store import optuna_internals

    assert optuna_internals.untested() is None, optuna.__version__
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert f'"optuna>={optuna_internals.TESTED[0]},' in pyproject


@pytest.mark.parametrize("dimensions", [1, 2, 3])
def test_our_hypervolume_equals_optunas(dimensions: int) -> None:
    import numpy as np
    from optuna._hypervolume import compute_hypervolume

    from tunecli.engine.store.optuna_internals import _swept_hypervolume

    rng = np.random.default_rng(dimensions)
    for _ in range(10):
        losses = rng.random((12, dimensions))
        reference = np.full(dimensions, 1.1)
        ours = _swept_hypervolume([tuple(row) for row in losses], tuple(reference))
        assert ours == pytest.approx(float(compute_hypervolume(losses, reference)), rel=1e-9)


def test_an_untested_optuna_switches_the_internals_off_and_says_so_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from tunecli.engine.store import optuna_internals
    from tunecli.engine.store.storage import open_storage

    monkeypatch.setattr(optuna, "__version__", "5.9.0")
    monkeypatch.setattr(optuna_internals, "_said", [])
    with pytest.warns(UserWarning, match="tested with Optuna 5.0 and this is 5.9.0") as said:
        storage = open_storage(f"sqlite:///{tmp_path / 'x.db'}")
    value = optuna_internals.compute_hypervolume(np.array([[0.5, 0.5]]), np.array([1., 1.]))
    assert sum("tested with Optuna" in str(w.message) for w in said) == 1
    assert not isinstance(storage, optuna_internals.RunningHere)
    assert value == pytest.approx(0.25)
    study = optuna.create_study(storage=storage)  # Optuna's own cache, working as ever
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=3)
    assert len(study.trials) == 3


def test_a_storage_without_heartbeats_gets_a_lease_renewed_while_the_block_runs() -> None:
    """Optuna's storage proxy has no heartbeat: the open trials' lease count goes up instead."""
    study = optuna.create_study()  # in memory: no heartbeat either
    trials = [study.ask(), study.ask()]

    def beats() -> list[int]:
        return [t.system_attrs.get(attrs.LEASE, {}).get("beat", -1) for t in study.get_trials()]

    with heartbeats(study, lambda: trials, 0.01):
        deadline = time.time() + 60
        while min(beats()) < 2:
            assert time.time() < deadline, f"the lease was not renewed: {beats()}"
            time.sleep(0.01)
    assert study.get_trials()[0].system_attrs[attrs.LEASE]["every"] == 0.01


def test_a_lease_unchanged_for_six_renewals_on_this_clock_is_lost_and_retried(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a lease that stops changing counts, measured on this process's clock (another
    machine's clock may be anything); this process's own trials are never reaped by it."""
    now = [1000.0]
    monkeypatch.setattr(recovery.time, "monotonic", lambda: now[0])
    study = optuna.create_study(study_name="leases")
    theirs, renewing, mine = study.ask(), study.ask(), study.ask()
    for trial, worker in ((theirs, "machine-b:7"), (renewing, "machine-c:8"),
                          (mine, recovery.worker_id())):
        trial.set_user_attr("worker", worker)
        trial.storage.set_trial_system_attr(trial._trial_id, attrs.LEASE,
                                            {"beat": 0, "every": 10.0})
    assert recovery.reap_lost_trials(study) == 0  # first seen now
    for beat in range(1, 7):
        now[0] += 10.0
        renewing.storage.set_trial_system_attr(renewing._trial_id, attrs.LEASE,
                                               {"beat": beat, "every": 10.0})
        assert recovery.reap_lost_trials(study) == 0  # 60 s unchanged is not yet past 60 s
    now[0] += 1.0
    assert recovery.reap_lost_trials(study) == 1
    trials = study.get_trials()
    assert [t.state for t in trials[:3]] == [TrialState.FAIL, TrialState.RUNNING,
                                             TrialState.RUNNING]
    assert trials[0].user_attrs["fail_reason"] == attrs.LOST_LEASE
    assert trials[3].state == TrialState.WAITING and trials[3].user_attrs["replaces"] == 0
    assert recovery.leased_elsewhere(study.get_trials()) == 1  # renewing; mine is not counted


def test_the_proxy_internals_the_lock_is_built_on_are_there() -> None:
    """TLS and the token build Optuna's proxy server and client from their parts."""
    from optuna.storages._grpc import servicer
    from optuna.storages._grpc.auto_generated import api_pb2_grpc
    from optuna.storages._grpc.client import GrpcClientCache

    assert callable(servicer.OptunaStorageProxyService) and callable(GrpcClientCache)
    assert callable(api_pb2_grpc.add_StorageServiceServicer_to_server)
    assert callable(api_pb2_grpc.StorageServiceStub)
    assert callable(optuna.storages.GrpcStorageProxy._setup)
    study = optuna.create_study()
    study.ask()
    assert trial_id_of(study.get_trials()[0]) == study.get_trials()[0]._trial_id
