"""Where studies live: the embedded default, storage URLs, and credential masking.

The default is a SQLite file in the current folder, ``tunecli.db``: nothing to start, and
``optuna`` and optuna-dashboard read it as it is. ``--storage`` or ``TUNECLI_STORAGE`` select any
Optuna RDB URL (``postgresql://...`` for many machines), a journal file (``journal:PATH`` or a
path ending in ``.journal``/``.log``), or ``grpc://HOST:PORT``: Optuna's storage proxy that
``tunecli serve`` runs in front of a database, which keeps one cache for hundreds of workers.

A database server's connections: at most two per process (one, and one for the heartbeat
thread), checked before use (``pool_pre_ping``) and recycled before servers drop idle ones; a
call that finds the server gone is retried with back-off (``Reconnecting``), said once.

SQLite is opened in WAL mode, with every transaction taking the write lock at its start and a
long busy timeout, so Optuna's heartbeat thread and several local worker processes share one file
without "database is locked" errors (see ``_sqlite_pragmas``).
"""

from __future__ import annotations

import copy
import os
import re
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from tunecli import attrs
from tunecli.engine.store.optuna_internals import HeartbeatBase, trial_id_of
from tunecli.engine.store.recovery import worker_id
from tunecli.errors import SpecError

__all__ = [
    "DEFAULT_URL",
    "ENV_VAR",
    "describe",
    "local_file",
    "mask",
    "open_existing",
    "open_storage",
    "resolve_url",
    "study_folder",
]

DEFAULT_URL = "sqlite:///tunecli.db"
ENV_VAR = "TUNECLI_STORAGE"
HEARTBEAT_SECONDS = 10
GRACE_SECONDS = 30
_CREDENTIALS_RE = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@]*):"
                             r"(?P<password>[^@/]*)@")


_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_JOURNAL_SUFFIXES = (".journal", ".log")


def quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # we print our own trial lines
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")


def resolve_url(option: str | None, from_spec: str | None = None) -> str:
    """--storage wins over TUNECLI_STORAGE, which wins over the study file, then the default.

    A bare path must say what it is by its suffix (.db/.sqlite: SQLite; .journal/.log: a
    journal file), so that a typo such as ``--storage results.txt`` is not silently made into a
    new SQLite file of that name.
    """
    url = option or os.environ.get(ENV_VAR) or from_spec or DEFAULT_URL
    if "://" not in url and not url.startswith("journal:"):
        if url.lower().endswith(_JOURNAL_SUFFIXES):
            url = f"journal:{url}"
        elif url.lower().endswith(_SQLITE_SUFFIXES):
            url = f"sqlite:///{url}"
        else:
            source = "--storage" if option else (ENV_VAR if os.environ.get(ENV_VAR)
                                                 else "storage")
            raise SpecError(f"'{url}' is neither a storage URL nor a .db or .journal file",
                            source=source,
                            fix=f"Write {Path(url).stem}.db (SQLite), {Path(url).stem}.journal, "
                                f"or a URL such as sqlite:///{url}.")
    return url


def grpc_address(url: str) -> tuple[str, int] | None:
    """(host, port) of a ``grpc://HOST:PORT`` URL, None for another URL."""
    if not url.startswith("grpc://"):
        return None
    host, _, port = url.removeprefix("grpc://").rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        raise SpecError(f"'{url}' does not name a host and a port", source="--storage",
                        fix="Write grpc://HOST:PORT, e.g. grpc://127.0.0.1:13000.")
    return host.strip("[]"), int(port)


def local_file(url: str) -> Path | None:
    """The file behind a SQLite or journal URL (absolute), None for servers and memory."""
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        return Path(url.removeprefix("sqlite:///")).expanduser().resolve()
    if url.startswith("journal:"):
        return Path(url.removeprefix("journal:")).expanduser().resolve()
    return None


def describe(url: str) -> str:
    """The URL as a user should see it: password masked, a file's path made absolute."""
    path = local_file(url)
    if path is None:
        return mask(url)
    return f"journal:{path}" if url.startswith("journal:") else f"sqlite:///{path}"


def mask(text: str) -> str:
    """Hide passwords of any URL inside ``text``: postgresql://me:***@host/db."""
    return _CREDENTIALS_RE.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)


def study_folder(url: str, study_name: str) -> Path:
    """The study's own local folder (checkpoints), beside a file storage or in the cwd."""
    path = local_file(url)
    base = path.parent if path is not None else Path.cwd()
    return base / ".tunecli" / study_name


def _sqlite_pragmas(storage: optuna.storages.RDBStorage) -> None:
    """WAL, and every transaction taking the write lock at BEGIN (BEGIN IMMEDIATE).

    SQLite's "database is locked" comes from a transaction that read first and then wants to
    write while another connection writes: that upgrade cannot wait, so it fails at once. An
    IMMEDIATE transaction asks for the lock up front, where the busy timeout makes it wait its
    turn instead. Optuna's heartbeat thread and several worker processes then share the file.
    """
    from sqlalchemy import event

    def on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    def on_begin(connection) -> None:  # type: ignore[no-untyped-def]
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    event.listen(storage.engine, "connect", on_connect)
    event.listen(storage.engine, "begin", on_begin)
    storage.engine.dispose()  # connections made from now on get these settings


def open_storage(url: str, *, heartbeat: bool = True, create: bool = True,
                 connections: int = 1) -> BaseStorage:
    """An Optuna storage for ``url``; a SpecError (exit 2) when it cannot be opened.
    ``connections``: a database server's pool for this process's threads (one worker: one;
    ``tunecli serve`` answers many at once), plus one for the heartbeat thread.

    ``create=False`` (report, resume, train, list): a storage file that does not exist is an
    error naming its absolute path, not a new empty file left behind.
    """
    path = local_file(url)
    if not create and path is not None and not path.is_file():
        raise SpecError(f"no storage at {describe(url)}" + (
                            f" ({path} is a folder)" if path.exists() else ""),
                        source="--storage",
                        fix="Run it from the folder where you ran tunecli search, or give "
                            "--storage PATH or TUNECLI_STORAGE.")
    try:
        address = grpc_address(url)
        if address is not None:
            return Reconnecting(_proxy(*address), url)  # type: ignore[abstract]
        if url.startswith("journal:"):
            return _journal(url)
        return _database_made_once(url, path, heartbeat, connections)
    except SpecError:
        raise
    except ImportError as exc:
        scheme = url.split(":", 1)[0].split("+", 1)[0]
        fix = {"postgresql": "Install it: pip install 'tunecli[postgres]'.",
               "mysql": "Install a MySQL driver, e.g. pip install pymysql, and write "
                        "mysql+pymysql://user:pass@host/db."}.get(
            scheme, f"Install the SQLAlchemy driver for {scheme}.")
        raise SpecError(f"cannot open storage {mask(url)}: missing driver ({exc})",
                        source="--storage", fix=fix) from None
    except Exception as exc:
        reason = mask(str(exc).splitlines()[0]) if str(exc) else type(exc).__name__
        raise SpecError(f"cannot open storage {mask(url)} ({reason})", source="--storage",
                        fix="Check the URL, that the server runs, and the credentials.") from None


def _database_made_once(url: str, path: Path | None, heartbeat: bool,
                        connections: int) -> BaseStorage:
    """Two processes that open a new database at once (two workers started together) both
    create its tables; the one that loses the race finds them made when it opens it again."""
    try:
        return _database(url, path, heartbeat, connections)
    except Exception as exc:
        if not any(words in str(exc) for words in ("UNIQUE constraint failed", "already exists",
                                                   "duplicate key")):
            raise
        return _database(url, path, heartbeat, connections)


def open_existing(url: str) -> BaseStorage | None:
    """The storage at ``url`` for reading, or None where it is a file not there (readers such
    as ``list`` and ``launch`` never create one)."""
    path = local_file(url)
    if path is not None and not path.is_file():
        return None
    quiet_optuna()
    return open_storage(url, heartbeat=False, create=False)


def _database(url: str, path: Path | None, heartbeat: bool, connections: int) -> BaseStorage:
    """An SQLAlchemy URL's storage: SQLite tuned for several processes, a server's small pool."""
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:"):
        if path is not None and not path.parent.exists():
            raise SpecError(f"folder {path.parent} does not exist",
                            source="--storage", fix="Create it or give another path.")
        engine_kwargs = {"connect_args": {"timeout": 120}}
    elif url.startswith(("postgresql", "mysql")):
        engine_kwargs = {**_SERVER_POOL, "pool_size": connections,
                         "connect_args": {"connect_timeout": 10}}
    kwargs: dict[str, Any] = {}
    if heartbeat:
        kwargs = {"heartbeat_interval": HEARTBEAT_SECONDS, "grace_period": GRACE_SECONDS}

    def rdb() -> optuna.storages.RDBStorage:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)

    # A server this process reached before is being restarted: wait as for a lost connection.
    storage: optuna.storages.RDBStorage = retry_lost(rdb, url, _warn) if url in _REACHED \
        else rdb()
    _REACHED.add(url)
    if url.startswith("sqlite:"):
        _sqlite_pragmas(storage)
    from tunecli.engine.store.optuna_internals import cached

    # Optuna's database storage retries a lost commit inside itself: a creation may be doubled
    return Reconnecting(cached(storage), url, copies_inside=True)  # type: ignore[abstract]


# One connection per process, and one more for the heartbeat thread; checked before each use;
# renewed after 30 minutes (servers drop idle connections after an hour).
_SERVER_POOL = {"pool_size": 1, "max_overflow": 1, "pool_pre_ping": True, "pool_recycle": 1800}


def _journal(url: str) -> BaseStorage:
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    path = Path(url.removeprefix("journal:")).expanduser()
    if not path.parent.exists():
        raise SpecError(f"folder {path.parent} does not exist", source="--storage",
                        fix="Create it or give another path.")
    return JournalStorage(JournalFileBackend(str(path)))


GRPC_INSTALL = "pip install 'grpcio>=1.60' 'protobuf>=5.28.1'"


def require_grpc(what: str, source: str) -> None:
    """Optuna's storage proxy needs grpcio and protobuf (tunecli's own dependencies, missing
    only where they were left out): said before anything is created or connected."""
    try:
        import google.protobuf  # noqa: F401
        import grpc  # noqa: F401
    except ImportError as exc:
        raise SpecError(f"{what} needs grpcio and protobuf ({exc})", source=source,
                        fix=f"Install them: {GRPC_INSTALL}") from None


def _proxy(host: str, port: int) -> BaseStorage:
    """A client of ``tunecli serve`` (Optuna's gRPC storage proxy), once its port answers and
    it takes this process's lock (``lock.client_lock``: TLS and the token)."""
    import socket

    require_grpc(f"grpc://{host}:{port}", "--storage")
    from tunecli.engine.store import optuna_internals
    from tunecli.engine.store.lock import TLS_CA_ENV, TOKEN_FILE_ENV, client_lock

    ca, interceptors = client_lock()
    try:
        socket.create_connection((host, port), timeout=10).close()
    except OSError as exc:
        raise SpecError(f"nothing answers at grpc://{host}:{port} ({exc.strerror or exc})",
                        source="--storage",
                        fix="Start it there: tunecli serve --storage DATABASE_URL --port "
                            f"{port}, or check the address.") from None
    import warnings

    import grpc

    with warnings.catch_warnings():  # experimental since 4.2: said in README, not each run
        warnings.simplefilter("ignore")
        if ca is None and not interceptors:
            client: BaseStorage = optuna.storages.GrpcStorageProxy(host=host, port=port)
        else:
            client = optuna_internals.grpc_client(host, port, ca, interceptors)
    try:
        client.get_all_studies()  # one call: the lock is checked before anything is stored
    except grpc.RpcError as exc:
        code = exc.code().name if callable(getattr(exc, "code", None)) else ""
        if code == "UNAUTHENTICATED":
            raise SpecError(f"grpc://{host}:{port} refused this process's token",
                            source="--storage",
                            fix=f"Set {TOKEN_FILE_ENV} to a file holding the token that tunecli "
                                "serve --token-file reads.") from None
        if code == "UNAVAILABLE":
            said = mask(str(exc.details() if callable(getattr(exc, "details", None)) else exc))
            raise SpecError(f"grpc://{host}:{port} answers but no storage call gets through "
                            f"({said})", source="--storage",
                            fix=f"If tunecli serve runs with --tls-cert, set {TLS_CA_ENV} to "
                                "the CA file that signed it (without TLS there, unset it).") \
                from None
        raise
    return client


RETRY_WAITS = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)  # about a minute in all
# Database URLs this process has opened: opening one again waits while it restarts.
_REACHED: set[str] = set()


def _warn(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def retry_lost(call: Callable[[], Any], url: str, say: Callable[[str], None],
               warned: bool = False) -> Any:
    """``call()``, retried with back-off while the storage at ``url`` cannot be reached,
    said once (unless ``warned``); any other error is raised at once."""
    for wait in (*RETRY_WAITS, None):
        try:
            return call()
        except Exception as exc:
            if wait is None or not connection_lost(exc):
                raise
            if not warned:
                warned = True
                say(f"warning: lost the connection to {mask(url)}; retrying for up to "
                    f"{sum(RETRY_WAITS):.0f} s")
            time.sleep(wait)
    raise AssertionError("unreachable")


def connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the database connection went away, or the
    storage server (``tunecli serve``) cannot be reached."""
    from sqlalchemy import exc as sql

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, sql.OperationalError | sql.InterfaceError) or (
                isinstance(seen, sql.DBAPIError) and seen.connection_invalidated):
            return True
        code = getattr(seen, "code", None)
        if callable(code) and getattr(code(), "name", "") == "UNAVAILABLE":  # grpc.RpcError
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class Reconnecting(BaseStorage, HeartbeatBase):
    """A storage whose calls are retried with back-off while its database cannot be reached
    (a restart, a dropped connection): the run waits, says so once, and goes on; nothing
    already stored is lost. Any other error is raised at once."""

    def __init__(self, inner: BaseStorage, url: str, say: Callable[[str], None] | None = None,
                 *, copies_inside: bool = False) -> None:
        self.inner = inner
        self._url = url
        self._say = say or _warn
        self._warned = False
        # Whether ``inner`` retries writes inside itself (a trial created twice is then found
        # after each creation; through tunecli serve, the proxy's own storage finds it)
        self._copies_inside = copies_inside

    def _call(self, name: str, *args: Any, again: Callable[[], Any] | None = None,
              **kwargs: Any) -> Any:
        """``inner.name(...)``, retried while the storage is away; a retry runs ``again``
        instead where a lost reply may hide a write that landed."""
        attempts = 0

        def said(text: str) -> None:
            self._warned = True
            self._say(text)

        def attempt() -> Any:
            nonlocal attempts
            attempts += 1
            if attempts > 1 and again is not None:
                return again()
            return getattr(self.inner, name)(*args, **kwargs)

        result = retry_lost(attempt, self._url, said, self._warned)
        self._warned = False
        return result

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        """A new trial, created once however often the call is retried: it carries a claim
        token (``attrs.CLAIM``); a retry first looks for the trial its lost reply created, and
        a copy the storage's own retries made (``copies_inside``) is stored as surplus (never
        trained, never counted)."""
        # A token the template carries already is the client's (tunecli serve creates for it)
        token = str((template_trial.system_attrs if template_trial else {}).get(attrs.CLAIM)
                    or uuid.uuid4().hex)
        template = _claimed(template_trial, token)

        def again() -> int:
            found = self._claims(study_id, token)
            return found[0] if found else self.inner.create_new_trial(study_id, template)

        trial_id: int = self._call("create_new_trial", study_id, template, again=again)
        for copy_id in self._claims(study_id, token) if self._copies_inside else ():
            if copy_id != trial_id:
                self.set_trial_user_attr(copy_id, attrs.SURPLUS, True)
                self.set_trial_state_values(copy_id, TrialState.FAIL)
        return trial_id

    def _claims(self, study_id: int, token: str) -> list[int]:
        """The unfinished trials created with claim ``token``, oldest first."""
        trials = self._call("get_all_trials", study_id, deepcopy=False,
                            states=(TrialState.RUNNING, TrialState.WAITING))
        return [trial_id_of(t) for t in trials if t.system_attrs.get(attrs.CLAIM) == token]

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Sequence[float] | None = None) -> bool:
        """The trial's state written once: a retry whose lost reply hid a write that landed
        finds the trial already so and says it was written, not that another process
        finished it (or, for a trial taken from the queue, took it)."""
        def again() -> bool:
            stored = self.inner.get_trial(trial_id)
            same_values = values is None or list(stored.values or []) == list(values)
            if stored.state == state and same_values:
                worker = stored.user_attrs.get(attrs.WORKER)
                return state != TrialState.RUNNING or worker in (None, worker_id())
            taken: bool = self.inner.set_trial_state_values(trial_id, state, values)
            return taken

        written: bool = self._call("set_trial_state_values", trial_id, state, values,
                                   again=again)
        return written

    def get_heartbeat_interval(self) -> int | None:
        """The database's heartbeat; none through the gRPC proxy (Optuna's has none)."""
        if not isinstance(self.inner, HeartbeatBase):
            return None
        interval: int | None = self._call("get_heartbeat_interval")
        return interval

    def __getstate__(self) -> dict[str, Any]:
        return {"inner": self.inner, "_url": self._url, "_copies_inside": self._copies_inside}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["inner"], state["_url"],  # type: ignore[misc]
                      copies_inside=state.get("_copies_inside", False))


def _claimed(template: FrozenTrial | None, token: str) -> FrozenTrial:
    """``template`` (a new running trial's when None) with the claim token among its system
    attributes."""
    import datetime

    if template is None:
        template = FrozenTrial(number=-1, state=TrialState.RUNNING, value=None,
                               datetime_start=datetime.datetime.now(), datetime_complete=None,
                               params={}, distributions={}, user_attrs={}, system_attrs={},
                               intermediate_values={}, trial_id=-1)
    else:
        template = copy.copy(template)
    template.system_attrs = {**template.system_attrs, attrs.CLAIM: token}
    return template


def _retried(name: str) -> Callable[..., Any]:
    def method(self: Reconnecting, *args: Any, **kwargs: Any) -> Any:
        return self._call(name, *args, **kwargs)
    method.__name__ = name
    return method


def _wrap_storage_api() -> None:
    """Every method of Optuna's storage and heartbeat interfaces (the heartbeat's own
    underscored ones too: Optuna calls them), retried; Optuna sees a storage with heartbeats,
    as the database storage inside is."""
    for base in (BaseStorage, HeartbeatBase):
        for name, value in vars(base).items():
            if callable(value) and not name.startswith("__") and name not in vars(Reconnecting):
                setattr(Reconnecting, name, _retried(name))
    Reconnecting.__abstractmethods__ = frozenset()


_wrap_storage_api()
