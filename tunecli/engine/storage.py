"""Where studies live: the embedded default, storage URLs, and credential masking.

The default is a SQLite file in the current folder, ``tunecli.db``: nothing to start, and
``optuna`` and optuna-dashboard read it as it is. ``--storage`` or ``TUNECLI_STORAGE`` select any
Optuna RDB URL (``postgresql://...`` for many machines) or a journal file (``journal:PATH`` or a
path ending in ``.journal``/``.log``).

SQLite is opened in WAL mode, with every transaction taking the write lock at its start and a
long busy timeout, so Optuna's heartbeat thread and several local worker processes share one file
without "database is locked" errors (see ``_sqlite_pragmas``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage

from tunecli.errors import SpecError

__all__ = [
    "DEFAULT_URL",
    "ENV_VAR",
    "describe",
    "local_file",
    "mask",
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


def open_storage(url: str, *, heartbeat: bool = True, create: bool = True) -> BaseStorage:
    """An Optuna storage for ``url``; a SpecError (exit 2) when it cannot be opened.

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
        if url.startswith("journal:"):
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            path = Path(url.removeprefix("journal:")).expanduser()
            if not path.parent.exists():
                raise SpecError(f"folder {path.parent} does not exist", source="--storage",
                                fix="Create it or give another path.")
            return JournalStorage(JournalFileBackend(str(path)))
        engine_kwargs: dict[str, Any] = {}
        if url.startswith("sqlite:"):
            if path is not None and not path.parent.exists():
                raise SpecError(f"folder {path.parent} does not exist",
                                source="--storage", fix="Create it or give another path.")
            engine_kwargs = {"connect_args": {"timeout": 120}}
        elif url.startswith("postgresql"):
            engine_kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
        kwargs: dict[str, Any] = {}
        if heartbeat:
            kwargs = {"heartbeat_interval": HEARTBEAT_SECONDS, "grace_period": GRACE_SECONDS}
        storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
        if url.startswith("sqlite:"):
            _sqlite_pragmas(storage)
        from tunecli.engine.optuna_internals import cached

        return cached(storage)
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
