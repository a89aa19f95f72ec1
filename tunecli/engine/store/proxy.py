"""``tunecli serve``: Optuna's gRPC storage proxy in front of one database.

Hundreds of workers then hold one connection each to the proxy instead of a pool each to the
database, and the proxy's one cache answers the reads every sampling step makes (each worker
would otherwise read the study's trials from the database itself). It listens on loopback unless
told otherwise. Its lock: TLS (``--tls-cert``/``--tls-key``; clients trust the CA file that
``TUNECLI_TLS_CA`` names) and a shared token (``--token-file``; clients send the one
``TUNECLI_TOKEN_FILE`` holds, as the ``tunecli-token`` header of every call, and a call without
it is refused as UNAUTHENTICATED). Both sides of the lock: ``lock``.
"""

from __future__ import annotations

import errno
import threading
import time
from typing import Any

from tunecli.errors import SpecError

__all__ = ["PROXY_THREADS", "Counted", "Proxy", "start"]

PROXY_THREADS = 10  # requests the proxy answers at once (Optuna's default), one connection each
_PORT_FIX = "Give another --port, or stop what listens there."
_HOST_FIX = "Give an address this machine has, e.g. 127.0.0.1 or 0.0.0.0."


class Counted:
    """The storage the proxy serves, counting the calls it answers (requests per second)."""

    def __init__(self, storage: Any) -> None:
        self._storage = storage
        self._lock = threading.Lock()
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._storage, name)
        if not callable(found):
            return found

        def counted(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.calls += 1
            return found(*args, **kwargs)
        return counted


class Proxy:
    """A started proxy: its address, its call count, ``stop``."""

    def __init__(self, server: Any, counted: Counted, host: str, port: int) -> None:
        self.server = server
        self.counted = counted
        self.host = host
        self.port = port
        self.started = time.monotonic()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"grpc://{host}:{self.port}"

    @property
    def reachable_url(self) -> str:
        """The URL other machines give: this machine's name where it listens on every address
        (grpc://0.0.0.0:PORT reaches nothing from elsewhere)."""
        if self.host in ("0.0.0.0", "::"):
            import socket

            return f"grpc://{socket.gethostname()}:{self.port}"
        return self.url

    def stop(self, grace: float = 5.0) -> None:
        """Finish the requests in flight (up to ``grace`` seconds), then close."""
        self.server.stop(grace).wait()


def _refuse_a_taken_port(host: str, port: int) -> None:
    """gRPC's servers share a port with SO_REUSEPORT, so a second proxy would start beside the
    first and clients would alternate between two databases: bind first without it (with
    SO_REUSEADDR, which a listener still refuses but a restarted proxy's old connections in
    TIME_WAIT do not)."""
    import socket

    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except socket.gaierror as exc:
        raise SpecError(f"cannot listen on {host}: not an address of this machine ({exc})",
                        source="--host", fix=_HOST_FIX) from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise SpecError(f"port {port} is in use on {host} (another tunecli serve?)",
                            source="--port", fix=_PORT_FIX) from None
        raise SpecError(f"cannot listen on {host}:{port} ({exc.strerror or exc})",
                        source="--host", fix=_HOST_FIX) from None


def start(url: str, host: str, port: int, tls: tuple[str, str] | None = None,
          token_file: str | None = None) -> Proxy:
    """The proxy for the database at ``url``, listening on ``host:port``; with ``tls``
    (certificate file, key file) and a ``token_file``, the door is locked."""
    from tunecli.engine.store import optuna_internals
    from tunecli.engine.store import storage as storage_module
    from tunecli.engine.store.lock import certificate, read_secret, token_check
    from tunecli.engine.store.storage import local_file, mask, open_storage, quiet_optuna

    quiet_optuna()
    storage_module.require_grpc("tunecli serve", "serve")
    if url.startswith("journal:"):
        raise SpecError(f"Optuna's storage proxy cannot serve a journal file ({mask(url)})",
                        source="--storage", fix="Serve a database: PostgreSQL for a cluster, "
                                                "or a SQLite file (.db) on one host.")
    if url.startswith("grpc://"):
        raise SpecError("--storage names another proxy", source="--storage",
                        fix="Give the database the proxy stands in front of.")
    pem = certificate(*tls) if tls else None
    checks = [token_check(read_secret(token_file, "--token-file", "the token file"))] \
        if token_file else []
    _refuse_a_taken_port(host, port)
    path = local_file(url)
    if path is not None and not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)  # a new SQLite file, as search would
    counted = Counted(open_storage(url, heartbeat=False, connections=PROXY_THREADS))
    try:
        server = optuna_internals.grpc_proxy(counted, host, port, PROXY_THREADS, pem, checks)
    except RuntimeError as exc:  # grpc: the port is taken or the address is not ours
        raise SpecError(f"cannot listen on {host}:{port} ({exc})", source="--port",
                        fix=_PORT_FIX) from None
    server.start()
    return Proxy(server, counted, host, port)
