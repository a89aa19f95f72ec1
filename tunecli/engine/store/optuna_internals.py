"""The one place tunecli reaches past Optuna's public API.

Optuna has no public call that writes a user attribute of a trial that another process started
(``Trial.set_user_attr`` needs the live ``Trial``), and recovery must record why it failed a lost
trial. Nor, since Optuna 5, one for a study's system attributes, where tunecli keeps the study's
spec: as a user attribute it made every row of ``optuna studies`` thousands of characters wide.
Everything else uses public calls: trials are found by ``number``, finished with ``study.tell``,
and grid points read from ``FrozenTrial.system_attrs``. Fused trials are asked and told by hand,
not through ``study.optimize``, so they start Optuna's heartbeat themselves (``heartbeats``).
A database storage is opened through ``RunningHere``, Optuna's own cache extended to keep the
trials this process runs, which Optuna would read back from the database on every read.
``tunecli serve`` builds Optuna's gRPC proxy server with ``make_server`` (the public
``run_grpc_proxy_server`` blocks and cannot be stopped gracefully); on an untested release it
runs the public one in a thread instead (``grpc_proxy``).
A storage that retries a lost database connection (``storage.Reconnecting``) must be a
heartbeat storage as Optuna checks it, by its private base class ``HeartbeatBase``, and calls
the storage with a stored trial's id (``trial_id_of``: ``FrozenTrial._trial_id``); where the
storage has no heartbeat, ``heartbeats`` writes a lease as a trial's system attribute.
Hypervolumes (``reports/hypervolume.py``) are Optuna's
``optuna._hypervolume.compute_hypervolume``. A test (``tests/test_optuna_internals.py``) pins
this module to the installed Optuna. On an Optuna release it was not tested with (``TESTED``),
what only speeds things up or has a public equivalent switches itself off, said once
(``untested``): ``RunningHere`` gives way to Optuna's own cache, hypervolumes are computed by
tunecli's own exact sweep. The attribute reads and writes above have no public equivalent and
stay.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.storages._cached_storage import _CachedStorage, _StudyInfo
from optuna.storages._heartbeat import BaseHeartbeat as HeartbeatBase
from optuna.trial import FrozenTrial, TrialState

from tunecli import attrs

__all__ = [
    "TESTED",
    "HeartbeatBase",
    "RunningHere",
    "ask",
    "cached",
    "compute_hypervolume",
    "grpc_client",
    "grpc_proxy",
    "heartbeats",
    "set_study_system_attr",
    "set_trial_user_attr",
    "study_system_attrs",
    "trial_id_of",
    "untested",
]

TESTED = ("5.0",)  # the Optuna minor releases the test suite has run on (pyproject agrees)
_said: list[str] = []


def untested() -> str | None:
    """Why the internals are off (Optuna is a release they were not tested with), said once
    per process as a warning; None on a tested release."""
    version = optuna.__version__
    if ".".join(version.split(".")[:2]) in TESTED:
        return None
    why = (f"tunecli was tested with Optuna {', '.join(TESTED)} and this is {version}: it "
           "uses Optuna's public behaviour where it would reach past it (slower storage reads)")
    if not _said:
        _said.append(why)
        warnings.warn(why, stacklevel=2)
    return why


def cached(storage: optuna.storages.RDBStorage) -> optuna.storages.BaseStorage:
    """A database storage as tunecli reads it: through ``RunningHere``, or on an untested
    Optuna as it is (Optuna then wraps it in its own cache)."""
    return storage if untested() else RunningHere(storage)


def compute_hypervolume(losses: Any, reference: Any) -> float:
    """The hypervolume that ``losses`` (rows of objectives, to minimise, each within
    ``reference``) dominate: Optuna's, or on an untested Optuna an exact sweep of our own."""
    if untested() is None:
        from optuna._hypervolume import compute_hypervolume as optunas

        return float(optunas(losses, reference))
    return _swept_hypervolume([tuple(map(float, row)) for row in losses],
                              tuple(map(float, reference)))


def _swept_hypervolume(points: list[tuple[float, ...]], reference: tuple[float, ...]) -> float:
    """Exact, by slicing along the last objective: each slab between two consecutive values
    adds its height times the (d-1)-dimensional volume of the points below it."""
    if not points:
        return 0.0
    if len(reference) == 1:
        return reference[0] - min(p[0] for p in points)
    ordered = sorted(points, key=lambda p: p[-1])
    total = 0.0
    for i, point in enumerate(ordered):
        top = ordered[i + 1][-1] if i + 1 < len(ordered) else reference[-1]
        if top > point[-1]:
            total += (top - point[-1]) * _swept_hypervolume(
                [p[:-1] for p in ordered[:i + 1]], reference[:-1])
    return total


def set_trial_user_attr(study: optuna.Study, number: int, key: str, value: Any) -> None:
    """Set a user attribute of trial ``number``, whichever process runs or ran it."""
    storage = study._storage
    trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    storage.set_trial_user_attr(trial_id, key, value)


def study_system_attrs(study: optuna.Study) -> dict[str, Any]:
    """The study's system attributes (kept by Optuna, shown by neither its CLI nor dashboard)."""
    return dict(study._storage.get_study_system_attrs(study._study_id))


def trial_id_of(trial: FrozenTrial) -> int:
    """The storage's id of a stored trial (what every storage call takes; not public)."""
    return int(trial._trial_id)


def set_study_system_attr(study: optuna.Study, key: str, value: Any) -> None:
    study._storage.set_study_system_attr(study._study_id, key, value)


def ask(study: optuna.Study) -> optuna.Trial:
    """``study.ask()``, without the warning that a heartbeat storage expects ``optimize``:
    ``heartbeats`` keeps the trials alive instead."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Heartbeat of storage")
        return study.ask()


@contextmanager
def heartbeats(study: optuna.Study, trials: Callable[[], list[optuna.Trial]],
               lease_every: float) -> Iterator[None]:
    """Keep ``trials()`` (the open ones) alive while the block runs, so another machine can
    tell they still run: Optuna's heartbeat where the storage has one (as ``study.optimize``
    records it for its one trial), else tunecli's lease (``attrs.LEASE``), a count renewed
    every ``lease_every`` seconds (Optuna's storage proxy has no heartbeat)."""
    from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled

    storage = study._storage
    if isinstance(storage, BaseHeartbeat) and is_heartbeat_enabled(storage):
        interval = float(storage.get_heartbeat_interval() or lease_every)

        def renew(trial: optuna.Trial, beat: int) -> None:
            storage.record_heartbeat(trial._trial_id)
    else:
        interval = lease_every

        def renew(trial: optuna.Trial, beat: int) -> None:
            # It may have finished meanwhile, or the storage be away: the next beat tries
            # again (whether a lease lapsed is another process's call).
            with contextlib.suppress(Exception):
                storage.set_trial_system_attr(trial._trial_id, attrs.LEASE,
                                              {"beat": beat, "every": lease_every})
    stop = threading.Event()

    def beat() -> None:
        count = 0
        while True:
            for trial in trials():
                renew(trial, count)
            count += 1
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name="tunecli-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


class RunningHere(_CachedStorage):
    """Optuna's cache of a database storage, which also keeps the trials this process runs.

    Why: Optuna's cache re-reads every unfinished trial from the database on each
    ``get_all_trials`` (the sampler and pruner call it several times a trial), with all its
    parameters, attributes and intermediate values; a fused group runs K trials at once, so
    each read loaded K trials that only this process writes (1.7 s of a 9 s digits search).
    Here a trial this process created or took from the queue is kept up to date from its own
    writes and left out of the reads. It is read again once it finishes, or when a write to it
    fails (another process finished it, e.g. failed it for a stale heartbeat), so every
    change another process makes is seen as before.
    """

    def __init__(self, backend: optuna.storages.RDBStorage) -> None:
        super().__init__(backend)
        self._running_here: set[int] = set()

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self._running_here = set()  # a copy in another process runs none of them

    def _own(self, trial_id: int) -> None:
        study_id, _ = self._trial_id_to_study_id_and_number[trial_id]
        self._running_here.add(trial_id)
        # Read again when it finishes, whatever finished meanwhile.
        self._studies[study_id].unfinished_trial_ids.add(trial_id)

    @contextmanager
    def _writing(self, trial_id: int) -> Iterator[None]:
        """A write to ``trial_id``; if it fails (another process may have finished the
        trial), the trial is read from the database from then on."""
        try:
            yield
        except BaseException:
            self._running_here.discard(trial_id)
            raise

    def _update(self, trial_id: int, write: Callable[[], None],
                change: Callable[[FrozenTrial], None]) -> None:
        """Write to the database; then apply the same change to the kept copy."""
        with self._writing(trial_id):
            write()
        with self._lock:
            if trial_id in self._running_here:
                study_id, number = self._trial_id_to_study_id_and_number[trial_id]
                trials = self._studies[study_id].trials
                trial = copy.copy(trials[number])  # others may hold the old one
                change(trial)
                trials[number] = trial

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        trial_id = super().create_new_trial(study_id, template_trial)
        if template_trial is None or template_trial.state == TrialState.RUNNING:
            with self._lock:
                self._own(trial_id)
        return trial_id

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Sequence[float] | None = None) -> bool:
        with self._writing(trial_id):
            taken = super().set_trial_state_values(trial_id, state, values)
        with self._lock:
            if state.is_finished():
                self._running_here.discard(trial_id)
            elif state == TrialState.RUNNING and taken and \
                    trial_id in self._trial_id_to_study_id_and_number:
                # Taken from the queue (which Optuna read through this cache): read it once.
                study_id, _ = self._trial_id_to_study_id_and_number[trial_id]
                self._add_trials_to_cache(study_id, [self._backend.get_trial(trial_id)])
                self._own(trial_id)
        return taken

    def set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                        distribution: BaseDistribution) -> None:
        def change(trial: FrozenTrial) -> None:
            trial._params = {**trial._params,
                             param_name: distribution.to_external_repr(param_value_internal)}
            trial._distributions = {**trial._distributions, param_name: distribution}

        self._update(trial_id, lambda: super(RunningHere, self).set_trial_param(
            trial_id, param_name, param_value_internal, distribution), change)

    def set_trial_intermediate_value(self, trial_id: int, step: int,
                                     intermediate_value: float) -> None:
        def change(trial: FrozenTrial) -> None:
            trial.intermediate_values = {**trial.intermediate_values, step: intermediate_value}

        self._update(trial_id, lambda: super(RunningHere, self).set_trial_intermediate_value(
            trial_id, step, intermediate_value), change)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        def change(trial: FrozenTrial) -> None:
            trial._user_attrs = {**trial._user_attrs, key: value}

        self._update(trial_id, lambda: super(RunningHere, self).set_trial_user_attr(
            trial_id, key, value), change)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        def change(trial: FrozenTrial) -> None:
            trial._system_attrs = {**trial._system_attrs, key: value}

        self._update(trial_id, lambda: super(RunningHere, self).set_trial_system_attr(
            trial_id, key, value), change)

    def get_trial(self, trial_id: int) -> FrozenTrial:
        with self._lock:
            if trial_id in self._running_here:
                study_id, number = self._trial_id_to_study_id_and_number[trial_id]
                return self._studies[study_id].trials[number]
        return super().get_trial(trial_id)

    def _read_trials_from_remote_storage(self, study_id: int) -> None:
        """As Optuna's, but the trials running here are not read."""
        with self._lock:
            if study_id not in self._studies:
                self._studies[study_id] = _StudyInfo()
            study = self._studies[study_id]
            here = {trial_id for trial_id in self._running_here
                    if self._trial_id_to_study_id_and_number[trial_id][0] == study_id}
            trials = _trials_but(self._backend, study_id, study.unfinished_trial_ids - here,
                                 study.last_finished_trial_id, here)
            if not trials:
                return
            self._add_trials_to_cache(study_id, trials)
            for trial in trials:
                if not trial.state.is_finished():
                    study.unfinished_trial_ids.add(trial._trial_id)
                    continue
                study.last_finished_trial_id = max(study.last_finished_trial_id,
                                                   trial._trial_id)
                study.unfinished_trial_ids.discard(trial._trial_id)


def _trials_but(backend: optuna.storages.RDBStorage, study_id: int, included: set[int],
                greater_than: int, excluded: set[int]) -> list[FrozenTrial]:
    """``RDBStorage._get_trials`` (the trials in ``included`` or after ``greater_than``) but
    for those in ``excluded``."""
    if not excluded:
        return backend._get_trials(study_id, None, included, greater_than)
    import sqlalchemy
    from optuna.storages._rdb import models
    from sqlalchemy import orm

    included = {trial_id for trial_id in included if trial_id <= greater_than}
    model = models.TrialModel
    with _rdb_session(backend) as session:
        wanted = model.trial_id > greater_than
        if included:
            wanted = sqlalchemy.or_(model.trial_id.in_(included), wanted)
        found = (session.query(model)
                 .options(orm.selectinload(model.params), orm.selectinload(model.values),
                          orm.selectinload(model.user_attributes),
                          orm.selectinload(model.system_attributes),
                          orm.selectinload(model.intermediate_values))
                 .filter(model.study_id == study_id, model.trial_id.notin_(excluded), wanted)
                 .order_by(model.trial_id).all())
        return [backend._build_frozen_trial_from_trial_model(trial) for trial in found]


def _rdb_session(backend: optuna.storages.RDBStorage) -> Any:
    from optuna.storages._rdb.storage import _create_scoped_session

    return _create_scoped_session(backend.scoped_session)


def grpc_proxy(storage: Any, host: str, port: int, threads: int,
               tls: tuple[bytes, bytes] | None = None, interceptors: Sequence[Any] = ()) -> Any:
    """Optuna's gRPC storage proxy for ``storage`` on ``host:port``, not yet started: an object
    with ``start()`` and ``stop(grace)`` (which returns an event to ``wait()`` on). ``tls``
    (certificate chain, private key, PEM) and ``interceptors`` (the token check) need the
    servicer of a tested Optuna: Optuna's own server has neither."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=threads)
    if untested() is None:
        import grpc
        from optuna.storages._grpc import servicer
        from optuna.storages._grpc.auto_generated import api_pb2_grpc

        server = grpc.server(pool, interceptors=list(interceptors) or None)
        api_pb2_grpc.add_StorageServiceServicer_to_server(  # type: ignore[no-untyped-call]
            servicer.OptunaStorageProxyService(storage), server)
        if tls is None:
            server.add_insecure_port(f"{host}:{port}")
        else:
            certificate, key = tls
            server.add_secure_port(f"{host}:{port}",
                                   grpc.ssl_server_credentials([(key, certificate)]))
        return server
    if tls is not None or interceptors:
        raise RuntimeError(f"TLS and the token need the gRPC servicer of Optuna {TESTED[-1]}; "
                           f"this is Optuna {optuna.__version__}")
    return _ThreadedProxy(storage, host, port, pool)


def grpc_client(host: str, port: int, ca: bytes | None, interceptors: Sequence[Any]) -> Any:
    """Optuna's storage proxy client over TLS (trusting the certificates of ``ca``) and/or
    with ``interceptors`` (the token): Optuna's own client connects only in the clear."""
    if untested() is not None:
        raise RuntimeError(f"TLS and the token need the gRPC client of Optuna {TESTED[-1]}; "
                           f"this is Optuna {optuna.__version__}")

    return _LockedProxy(host, port, ca, list(interceptors))


class _LockedProxy(optuna.storages.GrpcStorageProxy):
    """``grpc_client``'s proxy client: Optuna's, with its channel made here."""

    def __init__(self, host: str, port: int, ca: bytes | None, interceptors: list[Any]) -> None:
        self._ca, self._interceptors = ca, interceptors
        super().__init__(host=host, port=port)

    def _setup(self) -> None:
        import grpc
        from optuna.storages._grpc.auto_generated import api_pb2_grpc
        from optuna.storages._grpc.client import GrpcClientCache

        target, options = f"{self._host}:{self._port}", [("grpc.max_receive_message_length", -1)]
        channel = (grpc.secure_channel(target, grpc.ssl_channel_credentials(self._ca),
                                       options=options) if self._ca is not None
                   else grpc.insecure_channel(target, options=options))
        self._channel = grpc.intercept_channel(channel, *self._interceptors)
        self._stub = api_pb2_grpc.StorageServiceStub(  # type: ignore[no-untyped-call]
            self._channel)
        self._cache = GrpcClientCache(self._stub)


class _ThreadedProxy:
    """The public ``run_grpc_proxy_server`` in a daemon thread (it cannot be stopped: the
    process's end stops it)."""

    def __init__(self, storage: Any, host: str, port: int, pool: Any) -> None:
        self._thread = threading.Thread(
            target=optuna.storages.run_grpc_proxy_server, args=(storage,),
            kwargs={"host": host, "port": port, "thread_pool": pool}, daemon=True,
            name="tunecli-proxy")

    def start(self) -> None:
        self._thread.start()

    def stop(self, grace: float) -> threading.Event:
        done = threading.Event()
        done.set()
        return done
